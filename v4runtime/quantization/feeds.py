"""Model inputs: the signature check and the image-to-feed conversion used by calibration and the gate.

Both the calibration reader and the gate turn each image into the detector's eight input arrays with
the same stream extractor the scanner uses, so the INT8 model is calibrated and judged on exactly
what it will see in production.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from v4runtime.errors import QuantizationError, V4Error
from v4runtime.streams.spec import OUTPUT_STEGO, STREAM_SPECS

Feeds = dict[str, np.ndarray]

_FLOAT = 1  # onnx.TensorProto.FLOAT


def locate_model(name_or_path: str | Path) -> Path:
    """Turn a model path, or a shipped model's name such as ``v4-default``, into a path.

    A name is resolved through ``v4runtime.model.registry.resolve_model``, which also verifies the
    file's sha256 against its card; a path is returned as it is (``check_model_inputs`` checks it).

    Raises:
        ModelError: A name that is not a shipped model, or a shipped model that fails verification.
    """
    path = Path(name_or_path)
    if path.exists() or path.suffix == ".onnx" or len(path.parts) > 1:
        return path
    from v4runtime.model.registry import resolve_model

    return resolve_model(str(name_or_path)).path


def check_model_inputs(model_path: str | Path) -> None:
    """Check that a file is an ONNX detector with the eight named stream inputs.

    Args:
        model_path: Path of the ONNX model.

    Raises:
        QuantizationError: The file is missing, not ONNX, or its inputs/outputs differ from
            ``v4runtime.streams.spec`` (names, per-image shapes, float32).
    """
    import onnx

    path = Path(model_path)
    if not path.is_file():
        raise QuantizationError(f"model {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise QuantizationError(f"{path} is not a readable ONNX model: {exc}") from exc
    initializers = {t.name for t in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in initializers}
    expected = {s.name: s for s in STREAM_SPECS}
    if set(inputs) != set(expected):
        missing = sorted(set(expected) - set(inputs))
        extra = sorted(set(inputs) - set(expected))
        raise QuantizationError(
            f"{path} does not have the detector's inputs: missing {missing or 'none'}, "
            f"unexpected {extra or 'none'}"
        )
    for name, spec in expected.items():
        tensor = inputs[name].type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if tensor.elem_type != _FLOAT or tuple(dims[1:]) != spec.shape:
            raise QuantizationError(
                f"{path}: input {name!r} has shape {dims} (elem type {tensor.elem_type}); "
                f"expected [N, {', '.join(map(str, spec.shape))}] float32"
            )
    if OUTPUT_STEGO not in {o.name for o in model.graph.output}:
        raise QuantizationError(f"{path} has no output {OUTPUT_STEGO!r}")


def _as_feeds(streams: object) -> Mapping[str, np.ndarray]:
    """The extractor's ``Streams`` as ``{name: array}`` (a plain mapping is accepted as it is)."""
    if isinstance(streams, Mapping):
        return streams
    return streams.as_inputs()  # type: ignore[attr-defined]


def image_feeds(path: str | Path) -> Feeds:
    """Extract the eight streams of one image as a batch of one.

    Args:
        path: Image file.

    Returns:
        Input name -> float32 array with a leading batch axis of 1.

    Raises:
        QuantizationError: The image cannot be read or its streams cannot be extracted.
    """
    from v4runtime.streams import extract_streams

    try:
        streams = _as_feeds(extract_streams(Path(path)))
    except V4Error as exc:
        raise QuantizationError(f"cannot extract streams from {path}: {exc}") from exc
    except OSError as exc:
        raise QuantizationError(f"cannot read {path}: {exc}") from exc
    feeds: Feeds = {}
    for spec in STREAM_SPECS:
        array = np.asarray(streams[spec.name], dtype=np.float32)
        if array.shape == spec.shape:
            array = array[None]
        if array.shape != (1, *spec.shape):
            raise QuantizationError(f"stream {spec.name!r} of {path} has shape {array.shape}, expected {spec.shape}")
        feeds[spec.name] = np.ascontiguousarray(array)
    return feeds


class FeedReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over image files or ready-made feeds.

    Streams are extracted lazily, one image at a time, so a calibration set of hundreds of images
    does not hold hundreds of 3 MB feed dicts in memory at once. ``rewind()`` starts over (the
    ``--exclude-worst`` retry reads the set twice).
    """

    def __init__(self, items: Sequence[Path | Feeds]) -> None:
        """Create a reader.

        Args:
            items: Image paths (extracted on demand) or feed dicts (used as they are).
        """
        self._items = list(items)
        self._iter: Iterator[Path | Feeds] = iter(self._items)

    def __len__(self) -> int:
        """Number of samples one pass yields."""
        return len(self._items)

    def get_next(self) -> Feeds | None:
        """Return the next sample's feeds, or None at the end of the pass."""
        item = next(self._iter, None)
        if item is None:
            return None
        return dict(item) if isinstance(item, dict) else image_feeds(item)

    def __iter__(self) -> FeedReader:
        """Iterate over the remaining samples (``qdq_loss_debug`` reads the reader this way)."""
        return self

    def __next__(self) -> Feeds:
        """Next sample's feeds; StopIteration at the end of the pass."""
        feeds = self.get_next()
        if feeds is None:
            raise StopIteration
        return feeds

    def rewind(self) -> None:
        """Start the next pass from the first sample."""
        self._iter = iter(self._items)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Restrict the reader to a slice (onnxruntime calls this for batched calibration)."""
        self._iter = iter(self._items[start_index:end_index])
