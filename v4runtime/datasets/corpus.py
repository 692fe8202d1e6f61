"""The corpus builder: clean images, hard negatives and stego images, plus a JSONL manifest.

Every item is a pure function of ``(seed, kind, index, size)``: it draws from its own random
generator, so the same seed gives the same bytes whatever the number of workers or the order
in which they finish.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFilter, PngImagePlugin

from v4runtime.datasets.detectability import overwritten_lsb_z
from v4runtime.datasets.procedural import KINDS, procedural, sentence
from v4runtime.datasets.sources import alpha_images, photos, random_view
from v4runtime.errors import ConfigError
from v4runtime.jsonl import read_objects
from v4runtime.stego import BIT_METHODS, BIT_ORDERS, METHOD_FORMATS, embed
from v4runtime.stego import exif_block as eb
from v4runtime.stego.codec import quantize
from v4runtime.streams.spec import METHODS
from v4runtime.workers import exit_with_parent

MANIFEST = "manifest.jsonl"
SUMMARY = "corpus.json"
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp"}
#: (format, mode) of plain clean images.
CLEAN_PROFILES: tuple[tuple[str, str], ...] = (
    ("JPEG", "RGB"), ("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "P"),
    ("PNG", "L"), ("GIF", "P"), ("WEBP", "RGB"), ("WEBP", "RGBA"), ("BMP", "RGB"), ("BMP", "P"), ("BMP", "L"),
)
#: Kinds of hard negatives: clean files with the features real files have.
HARD_NEGATIVES: tuple[str, ...] = ("camera_exif", "png_text", "natural_alpha", "odd_palette", "resaved_jpeg")
HARD_NEGATIVE_SHARE = 0.35
PAYLOAD_MIN, PAYLOAD_MAX = 16, 4096
_CAMERAS = (("Canon", "Canon EOS 80D"), ("NIKON CORPORATION", "NIKON D750"), ("Apple", "iPhone 13"),
            ("SONY", "ILCE-7M3"), ("samsung", "SM-G991B"), ("FUJIFILM", "X-T30"))


@dataclass(frozen=True)
class Item:
    """One generated file: its bytes and its manifest record (without path and sha256)."""

    data: bytes
    record: dict[str, object]


@dataclass(frozen=True)
class CorpusSummary:
    """What :func:`build_corpus` wrote."""

    out: Path
    manifest: Path
    clean: int
    stego: int
    seconds: float
    manifest_sha256: str


# ----------------------------------------------------------------------------------- covers
def _dims(rng: np.random.Generator, size: int) -> tuple[int, int]:
    r = rng.random()
    if r < 0.7:
        return size, size
    if r < 0.85:  # smaller than the view: exercises the validity masks
        return int(rng.integers(size // 4, size)), int(rng.integers(size // 4, size))
    return int(rng.integers(size, size * 3 // 2 + 1)), int(rng.integers(size // 2, size * 3 // 2 + 1))


def _cover(rng: np.random.Generator, size: int) -> tuple[Image.Image, str]:
    """A clean RGB picture: a crop of a bundled photo (maybe recompressed) or a procedural image."""
    dims = _dims(rng, size)
    available = photos()
    if available and rng.random() < 0.6:
        photo = available[int(rng.integers(len(available)))]
        view = random_view(photo.image, rng, dims).convert("RGB")
        if rng.random() < 0.3:  # an earlier JPEG generation leaves its blocking in the pixels
            view = Image.open(io.BytesIO(_jpeg(view, int(rng.integers(50, 96))))).convert("RGB")
        return view, photo.name
    kind = KINDS[int(rng.integers(len(KINDS)))]
    return procedural(kind, rng, dims), f"procedural:{kind}"


def _natural_alpha(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Add a soft, natural-looking alpha (blurred shapes, vignette, cut-out)."""
    w, h = im.size
    mask = Image.new("L", im.size, 0 if rng.random() < 0.5 else 255)
    draw = ImageDraw.Draw(mask)
    fill = 255 if mask.getpixel((0, 0)) == 0 else int(rng.integers(0, 200))
    for _ in range(int(rng.integers(1, 5))):
        x0, x1 = sorted(int(v) for v in rng.integers(0, w, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, h, 2))
        draw.ellipse((x0, y0, x1 + 8, y1 + 8), fill=fill)
    mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(1, 8)))
    out = im.convert("RGBA")
    out.putalpha(mask)
    return out


def _quantize(im: Image.Image, rng: np.random.Generator, colours: int | None = None) -> Image.Image:
    colours = colours or int(rng.choice([16, 32, 64, 128, 256, 256]))
    return quantize(im, colours, dither=bool(rng.random() < 0.5))


def _to_mode(im: Image.Image, mode: str, rng: np.random.Generator) -> Image.Image:
    if mode == "RGBA":
        return _natural_alpha(im, rng)
    if mode == "P":
        return _quantize(im, rng)
    return im.convert(mode)


# ---------------------------------------------------------------------------------- encoding
def _jpeg(im: Image.Image, quality: int, **options: object) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB" if im.mode != "L" else "L").save(buf, "JPEG", quality=quality, **options)
    return buf.getvalue()


def _save(im: Image.Image, fmt: str, rng: np.random.Generator, **options: object) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        options.setdefault("quality", int(rng.integers(50, 99)))
        options.setdefault("progressive", bool(rng.random() < 0.2))
        im = im if im.mode in ("RGB", "L") else im.convert("RGB")
    elif fmt == "WEBP":
        if im.mode == "RGBA" or rng.random() < 0.3:
            options.update(lossless=True, exact=True, method=0)
        else:
            options.setdefault("quality", int(rng.integers(50, 96)))
        im = im if im.mode in ("RGB", "RGBA") else im.convert("RGB")
    elif fmt == "GIF":
        im = im if im.mode in ("P", "L") else _quantize(im, rng)
    elif fmt == "BMP":
        im = im if im.mode in ("RGB", "P", "L") else im.convert("RGB")
    im.save(buf, fmt, **options)
    return buf.getvalue()


def camera_exif(rng: np.random.Generator, im: Image.Image) -> bytes:
    """A camera-like EXIF block: make, model, dates, exposure, and a JPEG thumbnail."""
    make, model = _CAMERAS[int(rng.integers(len(_CAMERAS)))]
    stamp = f"20{int(rng.integers(10, 26)):02d}:{int(rng.integers(1, 13)):02d}:{int(rng.integers(1, 29)):02d} " \
            f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}:{int(rng.integers(0, 60)):02d}"
    thumb = im.convert("RGB").copy()
    thumb.thumbnail((160, 120))
    ifd0 = {eb.MAKE: make, eb.MODEL: model, eb.DATETIME: stamp, eb.ORIENTATION: 1,
            eb.X_RESOLUTION: (72, 1), eb.Y_RESOLUTION: (72, 1), eb.RESOLUTION_UNIT: 2, eb.SOFTWARE: "Firmware 1.0"}
    exif = {eb.DATETIME_ORIGINAL: stamp, eb.EXPOSURE_TIME: (1, int(rng.choice([30, 60, 125, 250, 1000]))),
            eb.F_NUMBER: (int(rng.integers(14, 80)), 10), eb.ISO: int(rng.choice([100, 200, 400, 800, 3200])),
            eb.FOCAL_LENGTH: (int(rng.integers(18, 200)), 1)}
    return eb.build_exif(ifd0, exif, _jpeg(thumb, int(rng.integers(70, 90))))


# ------------------------------------------------------------------------------------- items
def clean_item(seed: int, index: int, size: int = 256, *, hard_negative: str | None = None) -> Item:
    """Generate clean item ``index`` (a pure function of its arguments).

    ``hard_negative`` forces one of :data:`HARD_NEGATIVES` (tests and examples); by default a
    share of :data:`HARD_NEGATIVE_SHARE` of the items are hard negatives of a random kind.
    """
    rng = np.random.default_rng([seed, 0, index])
    cover, source = _cover(rng, size)
    hard = HARD_NEGATIVES[int(rng.integers(len(HARD_NEGATIVES)))] if rng.random() < HARD_NEGATIVE_SHARE else None
    if hard_negative is not None:
        if hard_negative not in HARD_NEGATIVES:
            raise ConfigError(f"unknown hard negative {hard_negative!r}; use one of {', '.join(HARD_NEGATIVES)}")
        hard = hard_negative
    if hard == "camera_exif":
        fmt = str(rng.choice(["JPEG", "JPEG", "JPEG", "PNG", "WEBP"]))
        data = _save(cover, fmt, rng, exif=b"Exif\x00\x00" + camera_exif(rng, cover))
    elif hard == "png_text":
        info = PngImagePlugin.PngInfo()
        for i in range(int(rng.integers(1, 5))):
            text = sentence(rng, int(rng.integers(2, 40)))
            key = ("Comment", "Software", "Description", "Author", "Title")[i % 5]
            kind = int(rng.integers(3))
            if kind == 0:
                info.add_text(key, text)
            elif kind == 1:
                info.add_text(key, text, zip=True)
            else:
                info.add_itxt(key, text, lang="en")
        mode = str(rng.choice(["RGB", "RGBA", "P", "L"]))
        fmt, data = "PNG", _save(_to_mode(cover, mode, rng), "PNG", rng, pnginfo=info)
    elif hard == "natural_alpha":
        fmt = str(rng.choice(["PNG", "PNG", "WEBP"]))
        sprites = alpha_images()
        if sprites and rng.random() < 0.4:
            sprite = sprites[int(rng.integers(len(sprites)))]
            im = random_view(sprite.image, rng, cover.size)
            source = sprite.name
        else:
            im = _natural_alpha(cover, rng)
        data = _save(im, fmt, rng)
    elif hard == "odd_palette":
        fmt = str(rng.choice(["PNG", "GIF", "BMP"]))
        colours = int(rng.choice([2, 3, 5, 7, 13, 17, 31, 61, 100, 127, 199, 255]))
        data = _save(_quantize(cover, rng, colours), fmt, rng)
    elif hard == "resaved_jpeg":
        fmt = "JPEG"
        data = _jpeg(cover, int(rng.integers(60, 99)))
        for _ in range(int(rng.integers(1, 4))):
            data = _jpeg(Image.open(io.BytesIO(data)), int(rng.integers(50, 96)), optimize=bool(rng.random() < 0.5))
    else:
        fmt, mode = CLEAN_PROFILES[int(rng.integers(len(CLEAN_PROFILES)))]
        data = _save(_to_mode(cover, mode, rng), fmt, rng)
    return Item(data, {"label": 0, "method": None, "format": fmt, "hard_negative": hard, "source": source,
                       "payload_size": 0, "payload_kind": None, "bit_order": None, "marker": None,
                       "payload_sha256": None, "cover_lsb_z": None})


def _payload(rng: np.random.Generator, limit: int) -> tuple[bytes, str]:
    size = int(round(math.exp(rng.uniform(math.log(PAYLOAD_MIN), math.log(PAYLOAD_MAX)))))
    size = max(1, min(size, limit))
    if rng.random() < 0.5:
        words = sentence(rng, size // 3 + 2).encode("ascii")
        while len(words) < size:
            words += b" " + sentence(rng, size // 3 + 2).encode("ascii")
        return words[:size], "text"
    return rng.bytes(size), "random"


def stego_item(seed: int, index: int, size: int = 256) -> Item:
    """Generate stego item ``index``: methods cycle so every method gets an equal share."""
    rng = np.random.default_rng([seed, 1, index])
    method = METHODS[index % len(METHODS)]
    fmt = str(rng.choice(METHOD_FORMATS[method]))
    bit_order = str(rng.choice(BIT_ORDERS)) if method in BIT_METHODS else None
    cover, source = _cover(rng, size)
    marker = bool(rng.random() < 0.5)
    overhead = (4 if marker else 0) + 1
    options: dict[str, object] = {}
    if method == "alpha":
        cover = _natural_alpha(cover, rng) if rng.random() < 0.5 else cover.convert("RGBA")
        limit = cover.width * cover.height // 8 - overhead
    elif method == "palette":
        cover = _quantize(cover, rng)
        limit = cover.width * cover.height // 8 - overhead
    elif method == "lsb.rgb":
        limit = 3 * cover.width * cover.height // 8 - overhead
    else:
        limit = PAYLOAD_MAX
        options["quality"] = int(rng.integers(60, 96))
        options["lossless"] = bool(rng.random() < 0.3)
        if method == "exif" and rng.random() < 0.5:
            make, model = _CAMERAS[int(rng.integers(len(_CAMERAS)))]
            options["exif_tags"] = {eb.MAKE: make, eb.MODEL: model}
            thumb = cover.copy()
            thumb.thumbnail((160, 120))
            options["thumbnail"] = _jpeg(thumb, 80)
        if fmt == "GIF":
            cover = _quantize(cover, rng)
        elif method == "raw" and fmt in ("PNG", "BMP") and rng.random() < 0.5:
            cover = _to_mode(cover, str(rng.choice(["P", "L", "RGBA"])) if fmt == "PNG" else "P", rng)
    payload, kind = _payload(rng, limit)
    data = embed(cover, payload, method, fmt, bit_order=bit_order or "lsb-first", marker=marker, **options)
    cover_z = overwritten_lsb_z(cover, method, len(payload) + overhead)
    return Item(data, {"label": 1, "method": method, "format": fmt, "hard_negative": None, "source": source,
                       "payload_size": len(payload), "payload_kind": kind, "bit_order": bit_order,
                       "marker": marker, "payload_sha256": hashlib.sha256(payload).hexdigest(),
                       "cover_lsb_z": None if cover_z is None else round(cover_z, 2)})


# ----------------------------------------------------------------------------------- builder
def _write(task: tuple[str, int, int, int, str]) -> dict[str, object]:
    """Worker: generate one item, write it, return its manifest record."""
    kind, index, seed, size, out = task
    item = (clean_item if kind == "clean" else stego_item)(seed, index, size)
    fmt = str(item.record["format"])
    rel = f"images/{kind}/{kind[0]}{index:06d}.{EXTENSIONS[fmt]}"
    path = Path(out) / rel
    path.write_bytes(item.data)
    with Image.open(io.BytesIO(item.data)) as im:
        mode, (width, height) = im.mode, im.size
    return {"path": rel, **item.record, "mode": mode, "width": width, "height": height,
            "bytes": len(item.data), "sha256": hashlib.sha256(item.data).hexdigest()}


class _Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done, self.start = total, enabled, 0, time.perf_counter()

    def step(self) -> None:
        self.done += 1
        if self.enabled and (self.done == self.total or self.done % 10 == 0):
            rate = self.done / max(1e-9, time.perf_counter() - self.start)
            filled = int(30 * self.done / max(1, self.total))
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} images {rate:.0f}/s")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


#: Largest ``--size``: the biggest generated image (1.5 x size a side) stays under the scanner's pixel cap.
MAX_SIZE = 4096
#: Prefix of the staging folder a build writes into before it replaces anything.
STAGING_PREFIX = ".building-"


def build_corpus(
    out: str | Path,
    *,
    clean: int,
    stego: int,
    seed: int = 0,
    size: int = 256,
    workers: int = 1,
    progress: bool | None = None,
    on_record: Callable[[dict[str, object]], None] | None = None,
) -> CorpusSummary:
    """Write ``clean`` + ``stego`` images under ``out/images`` and ``out/manifest.jsonl``.

    The build writes into a staging folder inside ``out`` and only then replaces the corpus there:
    an interrupted or failed build leaves an existing corpus as it was, and never a manifest that
    describes images which are not all written. ``manifest.jsonl`` is the last file put in place.

    Args:
        out: Output directory: new, empty, or an earlier corpus (which is replaced on success).
        clean: Number of clean images (about a third are hard negatives).
        stego: Number of stego images (methods in equal shares).
        seed: Same seed, same bytes (for the same Pillow and codec versions).
        size: Nominal side of the images; most are ``size`` x ``size``, some smaller or larger.
        workers: Processes generating images in parallel.
        progress: Show a progress bar; default: when stderr is a terminal.
        on_record: Called with each manifest record as it completes (in completion order).

    Returns:
        A :class:`CorpusSummary`. Manifest lines are sorted: clean then stego, by index.

    Raises:
        ConfigError: Negative counts or seed, no image at all, fewer than 1 worker, a size outside
            32..4096, an output that is a file or a non-empty folder other than a corpus, or an
            output that cannot be written.
    """
    if clean < 0 or stego < 0:
        raise ConfigError("--clean and --stego must be >= 0")
    if clean + stego == 0:
        raise ConfigError("--clean and --stego are both 0: nothing to build")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    if workers < 1:
        raise ConfigError("--workers must be >= 1")
    if not 32 <= size <= MAX_SIZE:
        raise ConfigError(f"--size must be between 32 and {MAX_SIZE}, got {size}")
    root = Path(out)
    _check_output(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
    except OSError as exc:
        raise ConfigError(f"cannot create the corpus folder {root}: {exc.strerror or exc}") from None
    try:
        summary = _build_in(staging, root, clean=clean, stego=stego, seed=seed, size=size, workers=workers,
                            progress=progress, on_record=on_record)
    except OSError as exc:
        raise ConfigError(f"cannot write the corpus {root}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def _check_output(root: Path) -> None:
    """Refuse an output that is a file, or a non-empty folder that is not a corpus (its files would be lost)."""
    for parent in (root, *root.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"cannot build a corpus in {root}: {parent} is not a folder")
        if parent.exists():
            break
    if not root.is_dir():
        return
    entries = [e for e in root.iterdir() if not e.name.startswith(STAGING_PREFIX)]
    if entries and not ((root / MANIFEST).is_file() or (root / SUMMARY).is_file()):
        raise ConfigError(f"{root} is not empty and is not a corpus (no {MANIFEST}); "
                          "choose a new or empty folder, or an earlier corpus to replace")


def _build_in(staging: Path, root: Path, *, clean: int, stego: int, seed: int, size: int, workers: int,
              progress: bool | None, on_record: Callable[[dict[str, object]], None] | None) -> CorpusSummary:
    """Generate everything in ``staging``, then move it into ``root`` (manifest last)."""
    for kind in ("clean", "stego"):
        (staging / "images" / kind).mkdir(parents=True)
    tasks = [("clean", i, seed, size, str(staging)) for i in range(clean)]
    tasks += [("stego", i, seed, size, str(staging)) for i in range(stego)]
    bar = _Progress(len(tasks), sys.stderr.isatty() if progress is None else progress)
    start = time.perf_counter()
    records: list[dict[str, object]] = []
    for record in _run(tasks, workers):
        records.append(record)
        bar.step()
        if on_record is not None:
            on_record(record)
    records.sort(key=lambda r: str(r["path"]))
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    (staging / MANIFEST).write_text(text, encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()
    seconds = time.perf_counter() - start
    # seconds and workers say what the build cost (the training record reports the recipe's time);
    # only the manifest identifies the corpus.
    summary = {"clean": clean, "stego": stego, "seed": seed, "size": size, "manifest": MANIFEST,
               "manifest_sha256": digest, "pillow": PIL.__version__, "seconds": round(seconds, 1),
               "workers": workers}
    (staging / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    # Commit: from here the old corpus is no longer complete (no manifest) until the new one is.
    (root / MANIFEST).unlink(missing_ok=True)
    if (root / "images").exists():
        (root / "images").rename(staging / "replaced-images")
    (staging / "images").rename(root / "images")
    (staging / SUMMARY).replace(root / SUMMARY)
    (staging / MANIFEST).replace(root / MANIFEST)
    return CorpusSummary(root, root / MANIFEST, clean, stego, seconds, digest)


def _run(tasks: list[tuple[str, int, int, int, str]], workers: int) -> Iterable[dict[str, object]]:
    if workers == 1 or len(tasks) < 2:
        yield from map(_write, tasks)
        return
    with multiprocessing.get_context().Pool(workers, initializer=exit_with_parent) as pool:
        yield from pool.imap_unordered(_write, tasks, chunksize=max(1, min(32, len(tasks) // (8 * workers))))


def read_manifest(path: str | Path) -> list[dict[str, object]]:
    """Read a manifest (the file or its corpus directory) into a list of records.

    Raises:
        ConfigError: no manifest, a manifest that is not UTF-8 text, or a line that is not a JSON object.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{path} not found or not a file (build a corpus with `v4runtime dataset build`)")
    return [record for _, record in read_objects(path, ConfigError)]
