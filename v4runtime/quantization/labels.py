"""Labelled image sets: which files are clean and which carry a payload.

Quantisation needs to know the class of every calibration and verification image: calibration must
mix clean and stego files (a detector calibrated on clean files only never sees the activation ranges
that stego files produce), and the gate measures false-positive and true-positive rates. The class comes
from the ``manifest.jsonl`` that ``v4runtime dataset build`` writes beside the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from v4runtime.errors import QuantizationError
from v4runtime.jsonl import read_objects

#: Name of the manifest file looked up in an image folder.
MANIFEST_NAME = "manifest.jsonl"

#: File suffixes treated as images when a folder has no manifest.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})

_PATH_KEYS = ("path", "file", "filename", "image")
_CLEAN_LABELS = frozenset({"clean", "cover", "negative", "0", "false"})
_STEGO_LABELS = frozenset({"stego", "positive", "1", "true"})


@dataclass(frozen=True)
class LabelledImage:
    """One image file and, when known, its class.

    Attributes:
        path: Absolute path of the image file.
        is_stego: True for stego, False for clean, None when no manifest gave the class.
        method: Embedding method of a stego file (one of ``streams.spec.METHODS``), else None.
    """

    path: Path
    is_stego: bool | None
    method: str | None = None


@dataclass(frozen=True)
class ImageSet:
    """The images of one folder, with their classes when a manifest gave them.

    Attributes:
        root: The folder.
        images: The images, in manifest order (or sorted by name without a manifest).
        labelled: True when the classes come from a manifest.
    """

    root: Path
    images: tuple[LabelledImage, ...]
    labelled: bool

    @property
    def n_clean(self) -> int:
        """Number of images known to be clean."""
        return sum(1 for im in self.images if im.is_stego is False)

    @property
    def n_stego(self) -> int:
        """Number of images known to carry a payload."""
        return sum(1 for im in self.images if im.is_stego is True)


def _label_of(record: dict, where: str) -> tuple[bool, str | None]:
    """Read the class (and method) of one manifest record."""
    method = record.get("method") or None
    for key in ("is_stego", "stego"):
        if isinstance(record.get(key), bool):
            return record[key], method if record[key] else None
    for key in ("label", "class", "kind"):
        value = record.get(key)
        if value is not None:
            text = str(value).strip().lower()
            if text in _CLEAN_LABELS:
                return False, None
            if text in _STEGO_LABELS:
                return True, method
            raise QuantizationError(f"{where}: unknown label {value!r} (expected 'clean' or 'stego')")
    if "method" in record:  # a manifest that marks clean files with method null
        return method is not None, method
    raise QuantizationError(f"{where}: record has no class (expected 'label', 'is_stego' or 'method')")


def _path_of(record: dict, root: Path, where: str) -> Path:
    """Resolve the image path of one manifest record relative to the folder."""
    for key in _PATH_KEYS:
        if isinstance(record.get(key), str):
            path = Path(record[key])
            return path if path.is_absolute() else root / path
    raise QuantizationError(f"{where}: record has no image path (expected one of {', '.join(_PATH_KEYS)})")


def _read_manifest(root: Path, manifest: Path) -> tuple[LabelledImage, ...]:
    """Parse ``manifest.jsonl`` into labelled images."""
    images: list[LabelledImage] = []
    for where, record in read_objects(manifest, QuantizationError):
        if record.get("type") not in (None, "image"):  # header or summary lines
            continue
        is_stego, method = _label_of(record, where)
        path = _path_of(record, root, where)
        images.append(LabelledImage(path=path.resolve(), is_stego=is_stego, method=method))
    return tuple(images)


def load_image_set(folder: str | Path) -> ImageSet:
    """List the images of a folder, labelled from its ``manifest.jsonl`` when there is one.

    Args:
        folder: A folder of images, usually made by ``v4runtime dataset build``.

    Returns:
        The image set; ``labelled`` is False when the folder has no manifest.

    Raises:
        QuantizationError: The folder is missing or unreadable, holds no images, or its manifest is
            malformed or names files that do not exist.
    """
    root = Path(folder)
    if not root.is_dir():
        raise QuantizationError(f"image folder {root} does not exist or is not a folder")
    manifest = root / MANIFEST_NAME
    if manifest.is_file():
        images = _read_manifest(root, manifest)
        missing = [im.path for im in images if not im.path.is_file()]
        if missing:
            raise QuantizationError(
                f"{manifest} names {len(missing)} file(s) that do not exist, e.g. {missing[0]}"
            )
        labelled = True
    else:
        try:
            files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        except OSError as exc:
            raise QuantizationError(f"cannot list {root}: {exc}") from exc
        images = tuple(LabelledImage(path=p.resolve(), is_stego=None) for p in files)
        labelled = False
    if not images:
        raise QuantizationError(f"image folder {root} holds no images")
    return ImageSet(root=root, images=images, labelled=labelled)


def require_both_classes(images: ImageSet, *, purpose: str, allow_unlabelled: bool = False) -> None:
    """Refuse a set that is not known to mix clean and stego images.

    Args:
        images: The image set.
        purpose: What the set is for, used in the message ("calibration", "verification").
        allow_unlabelled: Accept a folder without a manifest (the user vouches for the mix).

    Raises:
        QuantizationError: The set has no manifest (and no override), or holds one class only.
    """
    if not images.labelled:
        if allow_unlabelled:
            return
        raise QuantizationError(
            f"{purpose} folder {images.root} has no {MANIFEST_NAME}, so the mix of clean and stego "
            "images cannot be checked; build it with `v4runtime dataset build`, or pass "
            "--unlabelled-ok if you know it mixes both classes"
        )
    if images.n_clean == 0 or images.n_stego == 0:
        only = "clean" if images.n_stego == 0 else "stego"
        raise QuantizationError(
            f"{purpose} set {images.root} holds {only} images only ({len(images.images)} files); "
            "it must mix clean and stego images"
        )
