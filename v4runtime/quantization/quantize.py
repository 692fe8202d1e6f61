"""Static INT8 quantisation of the detector: pre-process, calibrate, quantise (QDQ), record, write.

The steps follow onnxruntime's guidance for CNNs on CPU: ``quant_pre_process`` (shape inference and
graph optimisation such as Conv+BN fusion) first, then ``quantize_static`` in QDQ format with signed
8-bit activations and weights (S8S8) and per-channel weights. ``reduce_range`` (7-bit weights) avoids
16-bit accumulator saturation on x86 CPUs without VNNI; by default it follows this host.

The output is written atomically: everything happens in a temporary folder beside the output, the
result is loaded once by onnxruntime to prove it runs, and only then renamed into place. A failure at
any step leaves no output file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from v4runtime.errors import ModelError, QuantizationError, V4Error
from v4runtime.files import check_output_file
from v4runtime.quantization.feeds import FeedReader, check_model_inputs, locate_model
from v4runtime.quantization.host import host_features
from v4runtime.quantization.labels import LabelledImage, load_image_set, require_both_classes
from v4runtime.streams.spec import OUTPUT_STEGO

#: Calibration methods offered on the command line -> onnxruntime ``CalibrationMethod`` member.
CALIBRATION_METHODS: dict[str, str] = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}

#: Activation types offered on the command line -> onnxruntime ``QuantType`` member. S8S8 (signed
#: activations and weights) is onnxruntime's recommended QDQ default; U8S8 is the alternative its
#: documentation suggests for x86 CPUs, and is often the faster of the two there.
ACTIVATION_TYPES: dict[str, str] = {"s8": "QInt8", "u8": "QUInt8", "s16": "QInt16"}

#: Prefix of the metadata keys the quantiser writes into the INT8 model.
METADATA_PREFIX = "v4.quantization."

#: Number of images the ``--exclude-worst`` SQNR analysis runs (it keeps every tensor in memory).
SQNR_SAMPLES = 8

#: Images per calibration stride (bounds calibration memory; see ``_stride``).
CALIBRATION_STRIDE = 16

_SIZE_WIDTH = 12  # fixed width of the size field, so writing it does not change the file size

log = logging.getLogger(__name__)


@dataclass
class QuantizeResult:
    """What ``quantize_model`` produced.

    Attributes:
        output: Path of the INT8 model.
        fp32_bytes: Size of the FP32 input file.
        int8_bytes: Size of the INT8 output file (metadata included).
        size_ratio: ``fp32_bytes / int8_bytes``.
        settings: The settings recorded in the model's metadata.
        excluded_nodes: Nodes kept in float.
        card: The INT8 model's card, or None when the FP32 model had none.
        layer_losses: SQNR ranking computed for ``exclude_worst`` (worst first), else empty.
    """

    output: Path
    fp32_bytes: int
    int8_bytes: int
    size_ratio: float
    settings: dict[str, str]
    excluded_nodes: list[str] = field(default_factory=list)
    layer_losses: list[dict] = field(default_factory=list)
    card: Path | None = None

    def as_dict(self) -> dict:
        """The result as a JSON-ready dict."""
        return {**asdict(self), "output": str(self.output), "card": str(self.card) if self.card else None}


def select_balanced(images: Sequence[LabelledImage], limit: int) -> list[LabelledImage]:
    """Pick at most ``limit`` images, spread evenly over the set, keeping both classes.

    Args:
        images: The candidate images (manifest order).
        limit: Maximum number to return (at least 2).

    Returns:
        A deterministic subset in the original order; clean and stego keep their proportions, and
        each class present keeps at least one image.
    """
    if len(images) <= limit:
        return list(images)
    groups: dict[bool | None, list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(image.is_stego, []).append(index)
    chosen: list[int] = []
    for members in groups.values():
        share = max(1, round(limit * len(members) / len(images)))
        step = len(members) / share
        chosen.extend(members[int(i * step)] for i in range(share))
    return [images[i] for i in sorted(set(chosen))]


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def preprocess(model: str | Path, output: str | Path) -> None:
    """Run onnxruntime's quantisation pre-processing (shape inference + graph optimisation).

    Symbolic shape inference (sympy) is tried first; graphs it cannot handle fall back to ONNX
    shape inference alone.
    """
    from onnxruntime.quantization import quant_pre_process

    try:
        quant_pre_process(str(model), str(output), skip_symbolic_shape=False)
    except Exception as exc:  # symbolic inference raises assorted errors on unusual graphs
        log.info("symbolic shape inference failed (%s); retrying with ONNX shape inference", exc)
        try:
            quant_pre_process(str(model), str(output), skip_symbolic_shape=True)
        except Exception as exc2:
            raise QuantizationError(f"onnxruntime pre-processing failed on {model}: {exc2}") from exc2


def _stride(n: int, most: int = CALIBRATION_STRIDE) -> int:
    """Largest divisor of ``n`` not above ``most`` (onnxruntime requires strides that divide the set)."""
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


class _Collector(logging.Handler):
    """Keeps the records onnxruntime's quantiser sends to the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _root_log_to_debug() -> Iterator[None]:
    """Route what onnxruntime logs on the root logger to this module's debug log.

    The quantiser warns through ``logging.warning`` about things it handles itself (a LayerNorm
    scale quantised per tensor because it has no channel axis, an opset raised for 16-bit
    activations); unhandled, Python prints those on stderr, in the middle of the CLI's output.
    """
    root = logging.getLogger()
    collector = _Collector()
    root.addHandler(collector)
    try:
        yield
    finally:
        root.removeHandler(collector)
        for record in collector.records:
            log.debug("onnxruntime: %s", record.getMessage())


def _quantize_static(
    pre: Path,
    out: Path,
    samples: Sequence[Path],
    *,
    method: str,
    per_channel: bool,
    reduce_range: bool,
    exclude: Sequence[str],
    activations: str,
) -> None:
    """One ``quantize_static`` call with our fixed choices (QDQ, signed 8-bit weights)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    chatter = io.StringIO()  # the histogram calibrators print progress; keep the CLI's stdout ours
    try:
        with contextlib.redirect_stdout(chatter), _root_log_to_debug():
            quantize_static(
                str(pre),
                str(out),
                FeedReader(samples),
                quant_format=QuantFormat.QDQ,
                activation_type=getattr(QuantType, ACTIVATION_TYPES[activations]),
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                reduce_range=reduce_range,
                nodes_to_exclude=list(exclude) or None,
                calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[method]),
                # Calibrate in strides: Entropy/Percentile would otherwise hold every intermediate
                # tensor of every calibration image in memory before building histograms.
                extra_options={"CalibStridedMinMax": _stride(len(samples))},
            )
    except V4Error:
        raise
    except Exception as exc:
        raise QuantizationError(f"onnxruntime quantize_static failed: {exc}") from exc
    finally:
        log.debug("%s", chatter.getvalue())


def _write_with_metadata(model_path: Path, target: Path, metadata: dict[str, str]) -> int:
    """Drop per-node debug notes and shape annotations, add our metadata (including the file's own final size), write ``target``.

    Returns:
        The size of the written file in bytes.
    """
    import onnx

    model = onnx.load(str(model_path))
    for node in model.graph.node:
        # Exporter debugging notes (PyTorch writes a stack trace with the build machine's paths for
        # every node): no effect on inference, often a fifth of a small model's file.
        del node.metadata_props[:]
        node.doc_string = ""
    # Shape annotations written by pre-processing: onnxruntime infers them again at load, and on
    # a QDQ graph (three tensors per quantised one) they are a tenth of a small model's file.
    del model.graph.value_info[:]
    keep = [p for p in model.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in {**metadata, "int8_size_bytes": "0" * _SIZE_WIDTH}.items():
        model.metadata_props.add(key=METADATA_PREFIX + key, value=value)
    size_prop = model.metadata_props[-1]
    size = len(model.SerializeToString())  # a fixed-width value: the size does not change when set
    size_prop.value = str(size).zfill(_SIZE_WIDTH)
    data = model.SerializeToString()
    target.write_bytes(data)
    return len(data)


def _card_path(model: Path) -> Path:
    """``x.onnx`` -> ``x.card.json`` (the registry's convention)."""
    return model.with_name(model.name.removesuffix(".onnx") + ".card.json")


def _stage_card(fp32: Path, int8: Path, target: Path, out_name: str, settings: dict[str, str]) -> Path | None:
    """Derive the INT8 model's card from the FP32 card, if the FP32 model has one.

    The scanner only loads models whose card matches the file's sha256, so an INT8 model without a
    card could not be deployed. The card keeps the FP32 threshold (the gate checks decisions at
    that threshold) and drops the FP32 metrics, which were not measured on the INT8 file.
    """
    if not _card_path(fp32).is_file():
        return None
    from v4runtime.model.card import read_card, write_card

    card = read_card(_card_path(fp32))
    training = {**card.training, "quantization": {"from_fp32_sha256": settings["fp32_sha256"], **settings}}
    int8_card = card.model_copy(
        update={
            "name": out_name.removesuffix(".onnx"),
            "sha256": sha256_file(int8),
            "created": datetime.now(UTC).replace(microsecond=0),
            "size_bytes": int8.stat().st_size,
            "training": training,
            "metrics": {},
        }
    )
    return write_card(int8_card, target)


def quantize_model(
    model: str | Path,
    calibration: str | Path,
    output: str | Path,
    *,
    method: str = "minmax",
    activations: str = "s8",
    per_channel: bool = True,
    reduce_range: bool | None = None,
    exclude_nodes: Sequence[str] = (),
    exclude_worst: int = 0,
    float_head: bool = True,
    max_images: int = 256,
    allow_unlabelled: bool = False,
) -> QuantizeResult:
    """Quantise an FP32 detector to INT8 (QDQ, S8S8) with images from a calibration folder.

    Args:
        model: FP32 ONNX detector with the eight stream inputs (a path, or a shipped model's name).
        calibration: Folder of images mixing clean and stego files, with ``manifest.jsonl``.
        output: Where to write the INT8 model (replaced atomically; untouched on failure). When the
            FP32 model has a card (``NAME.card.json``), a card for the INT8 file is written beside
            it, so the scanner and ``--model`` accept it.
        method: Calibration method: ``minmax``, ``entropy`` or ``percentile``.
        activations: ``s8`` (signed 8-bit activations: S8S8, the default) or ``u8`` (U8S8).
        per_channel: Quantise weights per output channel.
        reduce_range: 7-bit weights; None chooses True on x86 CPUs without VNNI.
        exclude_nodes: Node names to keep in float.
        exclude_worst: After a first pass, also keep the K nodes with the lowest SQNR in float and
            quantise again.
        float_head: Keep the decision head in float: the nodes from ``stego_probability`` back to
            the last weighted layer (see ``layer_loss.decision_head``).
        max_images: Use at most this many calibration images (evenly spread, both classes kept).
        allow_unlabelled: Accept a calibration folder without a manifest.

    Returns:
        Sizes, ratio and settings of the written model.

    Raises:
        QuantizationError: Wrong model inputs, unusable calibration folder, one-class set, or an
            onnxruntime failure. No output file is written in any of these cases.
    """
    import onnxruntime

    from v4runtime.scanner import create_session

    model, output = locate_model(model), Path(output)
    if method not in CALIBRATION_METHODS:
        raise QuantizationError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    if activations not in ACTIVATION_TYPES:
        raise QuantizationError(f"unknown activation type {activations!r}; choose one of {', '.join(ACTIVATION_TYPES)}")
    if exclude_worst < 0 or max_images < 2:
        raise QuantizationError("--exclude-worst must be >= 0 and --max-images >= 2")
    check_model_inputs(model)
    if output.resolve() == model.resolve():
        raise QuantizationError(f"--out {output} is the FP32 model itself; choose another output path")
    for path in (output, _card_path(output)):  # before any work, not after
        check_output_file(path, "--out", error=QuantizationError)
    image_set = load_image_set(calibration)
    require_both_classes(image_set, purpose="calibration", allow_unlabelled=allow_unlabelled)
    chosen = select_balanced(image_set.images, max_images)
    samples = [im.path for im in chosen]
    if reduce_range is None:  # 7-bit weights only where 8-bit products can saturate: x86 without VNNI
        host = host_features()
        reduce_range = host.machine.lower() in ("x86_64", "amd64", "i686") and not host.vnni
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QuantizationError(f"cannot create the folder of --out {output}: {exc.strerror or exc}") from None

    excluded = list(exclude_nodes)
    losses: list[dict] = []
    with tempfile.TemporaryDirectory(prefix=".v4-quant-", dir=output.parent) as tmp:
        pre, qdq = Path(tmp) / "fp32.pre.onnx", Path(tmp) / "int8.onnx"
        preprocess(model, pre)
        options = dict(method=method, per_channel=per_channel, reduce_range=reduce_range, activations=activations)
        if float_head:
            from v4runtime.quantization.layer_loss import decision_head, float_island

            excluded = list(dict.fromkeys(excluded + float_island(pre, decision_head(pre, OUTPUT_STEGO))))
        _quantize_static(pre, qdq, samples, exclude=excluded, **options)
        if exclude_worst:
            from v4runtime.quantization.layer_loss import float_island, layer_losses

            sqnr_samples = [im.path for im in select_balanced(chosen, SQNR_SAMPLES)]
            ranking = layer_losses(pre, qdq, sqnr_samples)
            losses = [loss.as_dict() for loss in ranking]
            worst = [loss.node for loss in ranking if loss.node not in excluded][:exclude_worst]
            excluded = list(dict.fromkeys(excluded + float_island(pre, worst)))
            _quantize_static(pre, qdq, samples, exclude=excluded, **options)

        fp32_bytes = model.stat().st_size
        settings = {
            "format": "QDQ",
            "activation_type": ACTIVATION_TYPES[activations],
            "weight_type": "QInt8",
            "per_channel": str(per_channel).lower(),
            "reduce_range": str(reduce_range).lower(),
            "calibration_method": method,
            "calibration_images": str(len(chosen)),
            "calibration_clean": str(sum(1 for im in chosen if im.is_stego is False)),
            "calibration_stego": str(sum(1 for im in chosen if im.is_stego is True)),
            "float_head": str(float_head).lower(),
            "excluded_nodes": json.dumps(excluded),
            "preprocessed": "true",
            "node_debug_metadata": "stripped",
            "fp32_sha256": sha256_file(model),
            "fp32_size_bytes": str(fp32_bytes),
            "onnxruntime_version": onnxruntime.__version__,
        }
        staged = Path(tmp) / "staged.onnx"
        int8_bytes = _write_with_metadata(qdq, staged, settings)
        try:
            create_session(staged)  # prove the result loads before it replaces anything
        except ModelError as exc:
            raise QuantizationError(f"the quantised model does not load: {exc}") from exc
        staged_card = _stage_card(model, staged, Path(tmp) / "staged.card.json", output.name, settings)
        os.replace(staged, output)
        if staged_card is not None:
            os.replace(staged_card, _card_path(output))
    settings["int8_size_bytes"] = str(int8_bytes)
    return QuantizeResult(
        output=output,
        fp32_bytes=fp32_bytes,
        int8_bytes=int8_bytes,
        size_ratio=fp32_bytes / int8_bytes,
        settings=settings,
        excluded_nodes=excluded,
        layer_losses=losses,
        card=_card_path(output) if staged_card is not None else None,
    )


def read_quantization_metadata(model: str | Path) -> dict[str, str]:
    """Return the ``v4.quantization.*`` metadata of a model (prefix removed); empty for FP32 models."""
    import onnx

    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception as exc:
        raise QuantizationError(f"{model} is not a readable ONNX model: {exc}") from exc
    return {
        p.key[len(METADATA_PREFIX) :]: p.value for p in proto.metadata_props if p.key.startswith(METADATA_PREFIX)
    }
