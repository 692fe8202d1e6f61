"""Training data: a corpus manifest, its streams extracted once and cached (no PyTorch).

A corpus is a directory built by ``v4runtime dataset build`` with a ``manifest.jsonl`` (one
record per image). Streams are extracted once, in parallel, and cached as
``streams-cache.npz`` in the corpus directory, keyed by the manifest's sha256, the stream
contract and the extractor's source, so a second training run on the same corpus starts at
once and a changed extractor never serves stale streams. Plane and byte streams hold multiples
of 1/255 (pixel values, bits, masks) and are stored as uint8 codes (4x smaller than float32,
exact); feature vectors stay float32.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from v4runtime.errors import ConfigError
from v4runtime.jsonl import read_objects
from v4runtime.model.card import sha256_file
from v4runtime.model.memory import check_fits
from v4runtime.model.progress import Progress
from v4runtime.streams.spec import METHODS, STREAM_NAMES, STREAM_SPECS
from v4runtime.workers import exit_with_parent

MANIFEST = "manifest.jsonl"
CACHE = "streams-cache.npz"
#: Bump when the cache layout changes.
CACHE_VERSION = 1
_SCALE = np.float32(1.0 / 255.0)


@dataclass
class Sample:
    """One manifest record, reduced to what training needs."""

    path: Path
    stego: bool
    method: int  # index into METHODS, -1 for clean images
    payload_bytes: int
    format: str
    unsignalled: bool = False  # random payload without marker in a bit-plane method
    cover_lsb_z: float | None = None  # LSB structure the payload overwrote (manifest ``cover_lsb_z``)


#: Methods that write payload bits into sample LSBs (the others append or insert whole bytes).
BIT_PLANE_METHODS = ("alpha", "palette", "lsb.rgb")


@dataclass
class StreamSet:
    """Streams of a whole corpus plus labels; ``batch()`` decodes rows to float32 inputs."""

    arrays: dict[str, np.ndarray]
    labels: np.ndarray  # (n,) float32, 1.0 = stego
    methods: np.ndarray  # (n,) int64, -1 for clean
    payload_bytes: np.ndarray  # (n,) int64
    formats: list[str]
    from_cache: bool = False  # True when the streams were read from ``streams-cache.npz``
    unsignalled: np.ndarray | None = None  # (n,) bool, see :class:`Sample`
    cover_lsb_z: np.ndarray | None = None  # (n,) float32, NaN where the manifest does not say

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: np.ndarray | Sequence[int]) -> dict[str, np.ndarray]:
        """Float32 model inputs for the rows in ``index``."""
        index = np.asarray(index)
        out = {}
        for name in STREAM_NAMES:
            rows = self.arrays[name][index]
            # Multiply by float32(1/255), exactly as the stream extractor scales bytes.
            out[name] = rows * _SCALE if rows.dtype == np.uint8 else rows.astype(np.float32)
        return out

    def subset(self, index: np.ndarray) -> StreamSet:
        """A view of the rows in ``index`` (copies)."""
        return StreamSet({k: v[index] for k, v in self.arrays.items()}, self.labels[index], self.methods[index],
                         self.payload_bytes[index], [self.formats[i] for i in index], self.from_cache,
                         None if self.unsignalled is None else self.unsignalled[index],
                         None if self.cover_lsb_z is None else self.cover_lsb_z[index])


def _first(record: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if key in record and record[key] is not None:
            return record[key]
    return default


def read_manifest(data_dir: str | Path) -> list[Sample]:
    """Read ``manifest.jsonl`` of a corpus directory.

    Raises:
        ConfigError: no manifest, a malformed line, an unknown method, or a missing image file.
    """
    data_dir = Path(data_dir)
    manifest = data_dir / MANIFEST
    if not manifest.is_file():
        raise ConfigError(f"{data_dir} is not a corpus: {MANIFEST} not found (build one with `v4runtime dataset build`)")
    samples = []
    for where, record in read_objects(manifest, ConfigError):
        method = _first(record, "method")
        stego = bool(_first(record, "label", "stego", "is_stego", default=method is not None))
        rel = _first(record, "path", "file")
        if rel is None:
            raise ConfigError(f"{where}: record has no 'path'")
        if not isinstance(rel, str) or not rel:
            raise ConfigError(f"{where}: 'path' must be a file name, got {rel!r}")
        if stego and method not in METHODS:
            raise ConfigError(f"{where}: unknown method {method!r} (expected one of {list(METHODS)})")
        path = data_dir / rel
        if not path.is_file():
            what = "is not a regular file" if path.exists() else "not found"
            raise ConfigError(f"{where}: image file {path} {what}")
        try:
            payload_bytes = int(_first(record, "payload_bytes", "payload_size", default=0) or 0)
            cover_lsb_z = None if record.get("cover_lsb_z") is None else float(record["cover_lsb_z"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: payload size and cover_lsb_z must be numbers ({exc})") from None
        samples.append(Sample(path=path, stego=stego, method=METHODS.index(method) if stego else -1,
                              payload_bytes=payload_bytes, format=str(_first(record, "format", default="?")),
                              unsignalled=bool(stego and method in BIT_PLANE_METHODS and record.get("marker") is False
                                               and record.get("payload_kind") == "random"),
                              cover_lsb_z=cover_lsb_z))
    if not samples:
        raise ConfigError(f"{manifest} lists no images")
    return samples


def _extract_init() -> None:
    """Initializer of the extraction pool: stop with the parent."""
    exit_with_parent()


def _extract_file(path: Path) -> dict[str, np.ndarray]:
    from v4runtime.streams import extract_streams

    return extract_streams(path).as_inputs()


def _uint8_codes(values: np.ndarray) -> np.ndarray | None:
    codes = np.rint(values * 255.0)
    if np.max(np.abs(codes - values * 255.0), initial=0.0) > 1e-3 or codes.min(initial=0) < 0 or codes.max(initial=0) > 255:
        return None
    return codes.astype(np.uint8)


def extract_all(paths: Sequence[Path], workers: int = 1,
                extract: Callable[[Path], dict[str, np.ndarray]] = _extract_file) -> dict[str, np.ndarray]:
    """Extract the streams of every file (in ``workers`` processes) into stacked arrays."""
    n = len(paths)
    arrays: dict[str, np.ndarray] = {}
    for spec in STREAM_SPECS:
        dtype = np.uint8 if len(spec.shape) >= 2 else np.float32
        arrays[spec.name] = np.zeros((n, *spec.shape), dtype=dtype)
    bar = Progress(n, "extract streams")
    if workers > 1:
        pool = get_context("spawn").Pool(workers, initializer=_extract_init)
        results = pool.imap(extract, paths, chunksize=8)
    else:
        pool = None
        results = map(extract, paths)
    try:
        for i, streams in enumerate(results):
            for name, values in streams.items():
                target = arrays[name]
                if target.dtype == np.uint8:
                    codes = _uint8_codes(values)
                    if codes is None:  # not a multiple of 1/255: keep this stream as float32
                        arrays[name] = target = target * _SCALE
                    else:
                        target[i] = codes
                        continue
                target[i] = values
            bar.advance()
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    bar.close()
    return arrays


def extractor_fingerprint() -> str:
    """sha256 of the stream extractor's source (``v4runtime/streams/*.py``): a cache made by another
    revision of the extractor is stale even when the corpus is the same."""
    import v4runtime.streams as streams_pkg

    digest = hashlib.sha256()
    for path in sorted(Path(streams_pkg.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _cache_key(manifest_sha: str) -> str:
    contract = ";".join(f"{s.name}:{s.shape}" for s in STREAM_SPECS)
    return f"v{CACHE_VERSION}|{manifest_sha}|{contract}|{extractor_fingerprint()}"


def _read_cache(cache: Path, key: str) -> dict[str, np.ndarray] | None:
    """The cached streams when ``cache`` is readable and made for ``key``; None otherwise (a corrupt
    or truncated cache is only a missed cache: the streams are extracted again)."""
    try:
        with np.load(cache, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                return None
            return {name: stored[name] for name in STREAM_NAMES}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _write_cache(cache: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Store the streams beside the manifest; a corpus folder that cannot be written only goes uncached."""
    tmp = cache.with_suffix(".tmp.npz")
    try:
        np.savez(tmp, key=np.array(key), **arrays)
        tmp.replace(cache)
    except OSError:
        tmp.unlink(missing_ok=True)


def load_corpus(data_dir: str | Path, workers: int = 1) -> tuple[StreamSet, str]:
    """Streams and labels of the corpus in ``data_dir`` and its manifest's sha256, from the cache
    when it is current (else extracted and cached)."""
    data_dir = Path(data_dir)
    samples = read_manifest(data_dir)
    check_fits(len(samples))  # before minutes of extraction, not an OOM kill at the end of them
    manifest_sha = sha256_file(data_dir / MANIFEST)
    key = _cache_key(manifest_sha)
    cache = data_dir / CACHE
    arrays: dict[str, np.ndarray] | None = None
    if cache.is_file():
        arrays = _read_cache(cache, key)
    cached = arrays is not None
    if arrays is None:
        arrays = extract_all([s.path for s in samples], workers=workers)
        _write_cache(cache, key, arrays)
    streams = StreamSet(
        arrays=arrays,
        labels=np.array([s.stego for s in samples], dtype=np.float32),
        methods=np.array([s.method for s in samples], dtype=np.int64),
        payload_bytes=np.array([s.payload_bytes for s in samples], dtype=np.int64),
        formats=[s.format for s in samples],
        from_cache=cached,
        unsignalled=np.array([s.unsignalled for s in samples], dtype=bool),
        cover_lsb_z=np.array([np.nan if s.cover_lsb_z is None else s.cover_lsb_z for s in samples], dtype=np.float32),
    )
    return streams, manifest_sha


def split(streams: StreamSet, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split, stratified by class and method (every stratum in both when
    it has at least two members)."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for stratum in np.unique(streams.methods):
        rows = np.flatnonzero(streams.methods == stratum)
        rng.shuffle(rows)
        k = int(round(len(rows) * val_fraction))
        if len(rows) >= 2:
            k = min(max(k, 1), len(rows) - 1)
        val.extend(rows[:k])
        train.extend(rows[k:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))
