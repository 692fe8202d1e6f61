"""Which layers lose the most in quantisation, by signal-to-quantisation-noise ratio (SQNR).

Uses onnxruntime's QDQ debugging utilities (``onnxruntime.quantization.qdq_loss_debug``): the float
and QDQ models are augmented to output every intermediate tensor and run on the same inputs; each
quantised activation is compared before and after its QuantizeLinear/DequantizeLinear pair, and
each weight with its dequantised INT8 copy. Activation SQNR is the median over the sample images,
so one outlier image cannot hide a loss on the others; where QDQ absorbed a Relu, the negatives it
clips on purpose are not counted as noise. A node's score is the lowest SQNR (in dB) among its
quantised weight and input activation; the lowest scores are the layers to keep in float.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from v4runtime.quantization.feeds import FeedReader

#: Node types whose weights are quantised and which ``--exclude-worst`` considers.
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})

#: Ops that only move data: QDQ quantises their output for the benefit of the consumer, so keeping a
#: layer in float means keeping the data-movement ops that feed it in float too.
DATA_MOVEMENT_OPS = frozenset(
    {"Concat", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Slice", "Gather", "Split", "Identity"}
)


@dataclass(frozen=True)
class LayerLoss:
    """Quantisation loss of one node.

    Attributes:
        node: Node name in the pre-processed FP32 graph (usable in ``nodes_to_exclude``).
        op_type: ONNX operator type.
        sqnr_db: The node's score: min of ``weight_sqnr_db`` and ``activation_sqnr_db``.
        weight_sqnr_db: SQNR of its quantised weight, or None.
        activation_sqnr_db: Lowest SQNR of its quantised inputs, or None.
        output_sqnr_db: SQNR of its output against the float model's (accumulated error), or None.
    """

    node: str
    op_type: str
    sqnr_db: float
    weight_sqnr_db: float | None
    activation_sqnr_db: float | None
    output_sqnr_db: float | None

    def as_dict(self) -> dict:
        """The loss as a JSON-ready dict."""
        return asdict(self)


def _lowest(values: Sequence[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return min(present) if present else None


def _median_sqnr(reference, noisy) -> float | None:
    """Median over samples of the per-sample SQNR (one outlier image must not dominate the ranking).

    Samples whose reference is all zero carry no signal and are skipped; None when none is left.
    """
    import numpy as np
    from onnxruntime.quantization.qdq_loss_debug import compute_signal_to_quantization_noice_ratio

    if reference is None or noisy is None or len(reference) != len(noisy):
        return None
    values = [
        float(compute_signal_to_quantization_noice_ratio(x, y))
        for x, y in zip(reference, noisy, strict=True)
        if np.any(x)
    ]
    return float(np.median(values)) if values else None


def _relu_floors(qdq_model: str | Path) -> dict[str, float]:
    """Tensors whose QuantizeLinear range starts at exactly 0 (a Relu folded into the QDQ pair)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq_model))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    floors: dict[str, float] = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        scale, zero = inits.get(node.input[1]), inits.get(node.input[2])
        if scale is None or zero is None or scale.size != 1:
            continue
        low = (float(np.iinfo(zero.dtype).min) - float(zero.reshape(-1)[0])) * float(scale.reshape(-1)[0])
        if abs(low) < 1e-12:
            floors[node.input[0]] = 0.0
    return floors


def _weight_sqnr(float_model: str | Path, qdq_model: str | Path) -> dict[str, float]:
    """SQNR of every quantised weight against its float original (scalars and biases skipped)."""
    import numpy as np
    from onnxruntime.quantization.qdq_loss_debug import (
        compute_signal_to_quantization_noice_ratio,
        create_weight_matching,
    )

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)  # the matcher logs an ERROR for every int32 bias it skips
    try:
        matching = create_weight_matching(str(float_model), str(qdq_model))
    finally:
        root.setLevel(level)
    result: dict[str, float] = {}
    for name, match in matching.items():
        float_w, deq_w = np.asarray(match.get("float")), np.asarray(match.get("dequantized"))
        if float_w.ndim == 0 or float_w.shape != deq_w.shape:
            continue
        result[name] = float(compute_signal_to_quantization_noice_ratio(float_w, deq_w))
    return result


def layer_losses(
    float_model: str | Path,
    qdq_model: str | Path,
    samples: Sequence[Path | dict],
    *,
    top: int | None = None,
) -> list[LayerLoss]:
    """Rank the weighted nodes of a QDQ model by SQNR, worst first.

    Args:
        float_model: The pre-processed FP32 model the QDQ model was made from (same tensor names).
        qdq_model: The QDQ INT8 model.
        samples: Image paths or feed dicts to run (a handful is enough).
        top: Keep only the ``top`` worst nodes.

    Returns:
        One entry per quantised Conv/Gemm/MatMul node of the float model, lowest SQNR first.
    """
    import numpy as np
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    with tempfile.TemporaryDirectory(prefix="v4-sqnr-") as tmp:
        aug_float = Path(tmp) / "float.aug.onnx"
        aug_qdq = Path(tmp) / "qdq.aug.onnx"
        modify_model_output_intermediate_tensors(str(float_model), str(aug_float))
        modify_model_output_intermediate_tensors(str(qdq_model), str(aug_qdq))
        reader = FeedReader(samples)
        float_acts = collect_activations(str(aug_float), reader)
        reader.rewind()
        qdq_acts = collect_activations(str(aug_qdq), reader)
    matching = create_activation_matching(qdq_acts, float_acts)
    floors = _relu_floors(qdq_model)
    act_local: dict[str, float] = {}
    act_cross: dict[str, float] = {}
    for name, match in matching.items():
        pre, post = match.get("pre_qdq"), match.get("post_qdq")
        if pre is None or post is None:
            continue
        if name in floors:  # QDQ absorbed a Relu here: negatives are clipped on purpose, not lost
            pre = [np.maximum(x, floors[name]) for x in pre]
        local = _median_sqnr(pre, post)
        if local is not None:
            act_local[name] = local
        cross = _median_sqnr(match.get("float"), post)
        if cross is not None:
            act_cross[name] = cross
    weight_err = _weight_sqnr(float_model, qdq_model)

    losses: list[LayerLoss] = []
    for node in onnx.load(str(float_model)).graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        w = _lowest([weight_err.get(name) for name in node.input[1:2]])
        a = _lowest([act_local.get(name) for name in node.input[:1]])
        out = _lowest([act_cross.get(name) for name in node.output])
        score = _lowest([w, a])
        if score is None:  # node was not quantised (excluded, or an unsupported pattern)
            continue
        losses.append(LayerLoss(node.name, node.op_type, score, w, a, out))
    losses.sort(key=lambda loss: loss.sqnr_db)
    return losses[:top] if top is not None else losses


def float_island(float_model: str | Path, nodes: Sequence[str]) -> list[str]:
    """Nodes to exclude so that ``nodes`` really run in float, inputs included.

    Excluding a Gemm alone keeps its weight in float, but a quantised Concat (or Reshape, ...) in
    front of it still rounds its input to 8 bits. This walks up from each node through data-movement
    producers and returns them too (in graph order, the given nodes first).

    Args:
        float_model: The pre-processed FP32 model.
        nodes: Node names to keep in float.

    Returns:
        ``nodes`` followed by the data-movement nodes that feed them.
    """
    import onnx

    graph = onnx.load(str(float_model)).graph
    producer = {out: node for node in graph.node for out in node.output}
    by_name = {node.name: node for node in graph.node}
    result = list(dict.fromkeys(nodes))
    stack = [by_name[n] for n in result if n in by_name]
    while stack:
        for name in stack.pop().input:
            node = producer.get(name)
            if node is not None and node.op_type in DATA_MOVEMENT_OPS and node.name not in result:
                result.append(node.name)
                stack.append(node)
    return result


def decision_head(float_model: str | Path, output: str, *, max_depth: int = 16) -> list[str]:
    """The nodes from ``output`` back to (and including) the nearest weighted layer.

    Quantising the stego logit rounds it to a coarse grid, and the sigmoid turns each grid step into
    a jump in probability: files just below the threshold jump above it. Keeping this short chain in
    float costs almost nothing in size and removes that effect.

    Args:
        float_model: The pre-processed FP32 model.
        output: Name of the graph output (``stego_probability``).
        max_depth: Stop after this many nodes when no weighted layer is found.

    Returns:
        Node names, output side first; empty when ``output`` is not produced by a node.
    """
    import onnx

    graph = onnx.load(str(float_model)).graph
    producer = {out: node for node in graph.node for out in node.output}
    constants = {t.name for t in graph.initializer}
    chain: list[str] = []
    node = producer.get(output)
    while node is not None and len(chain) < max_depth:
        chain.append(node.name)
        if node.op_type in WEIGHTED_OPS:
            break
        inputs = [name for name in node.input if name in producer and name not in constants]
        node = producer.get(inputs[0]) if inputs else None
    return chain
