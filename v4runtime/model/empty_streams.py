"""Skip the encoders of streams that are all zero (a load-time graph rewrite; outputs unchanged).

Most files have no transparency, no palette, no EXIF and no bytes after the image: their ``alpha``,
``palette``, ``palette_lsb`` and ``meta`` streams are all zero, so the encoder of each of those
streams computes the same embedding for every such file. :func:`skip_empty_streams` wraps each of
these encoders in an ONNX ``If``: when the batch's stream is all zero, the graph returns the
embedding computed once, on zeros, when the session is created; otherwise it runs the encoder as
before. The rewrite is found from the graph itself (the nodes that depend on that input alone), so
it applies to the float model and to its INT8 variants alike, and the file on disk, its sha256 and
its card are untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: Streams that are all zero whenever the file lacks that part (EXIF and tail, transparency,
#: palette): the ones worth a branch. ``pixel``, ``lsb``, ``format`` and ``content`` never are.
EMPTY_WHEN_ABSENT: tuple[str, ...] = ("meta", "alpha", "palette", "palette_lsb")


@dataclass(frozen=True)
class Branch:
    """The part of the graph that depends on one input alone.

    Attributes:
        stream: The graph input.
        positions: Indexes of its private nodes in the graph's node list, in order.
        output: The one value through which the rest of the graph reads them.
    """

    stream: str
    positions: tuple[int, ...]
    output: str


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Outer-scope values read by the subgraphs of ``node`` (If/Loop/Scan bodies)."""
    names: set[str] = set()
    for attr in node.attribute:
        for graph in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            produced = {o for n in graph.node for o in n.output} | {i.name for i in graph.initializer}
            for n in graph.node:
                names |= {i for i in n.input if i and i not in produced} | (_subgraph_inputs(n) - produced)
    return names


def _reads(node: onnx.NodeProto) -> set[str]:
    return {i for i in node.input if i} | _subgraph_inputs(node)


def _dependencies(nodes: list[onnx.NodeProto], inputs: Iterable[str]) -> list[frozenset[str]]:
    """The graph inputs each node depends on (initializers and constants: none)."""
    depends: dict[str, frozenset[str]] = {name: frozenset([name]) for name in inputs}
    out = []
    for node in nodes:
        deps = frozenset().union(*(depends.get(name, frozenset()) for name in _reads(node)))
        depends.update(dict.fromkeys(node.output, deps))
        out.append(deps)
    return out


def find_branches(model: onnx.ModelProto, streams: Iterable[str] = EMPTY_WHEN_ABSENT) -> list[Branch]:
    """The private part of each of ``streams`` that the rest of the graph reads through one value.

    Private: the nodes that depend on that input alone, plus the input-free nodes (constants, a
    quantised model's weight ``DequantizeLinear``) that feed nothing else, so that a quantised
    convolution keeps its weights in the same (sub)graph and onnxruntime still fuses it. A stream
    whose private nodes feed the rest of the graph through more than one value, or feed a graph
    output, is left out: there is no single embedding to stand in for it.
    """
    nodes = list(model.graph.node)
    inputs = {i.name for i in model.graph.input}
    depends = _dependencies(nodes, inputs)
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in _reads(node):
            consumers.setdefault(name, []).append(i)
    graph_outputs = {o.name for o in model.graph.output}
    branches = []
    for stream in streams:
        if stream not in inputs:
            continue
        private = {i for i, deps in enumerate(depends) if deps == {stream}}
        for i in reversed(range(len(nodes))):  # consumers first, so chains of input-free nodes join whole
            if i in private or depends[i] or not nodes[i].output:
                continue
            users = [c for out in nodes[i].output for c in consumers.get(out, [])]
            if users and set(users) <= private and not set(nodes[i].output) & graph_outputs:
                private.add(i)
        produced = {o for i in private for o in nodes[i].output}
        read_outside = {name for i, n in enumerate(nodes) if i not in private for name in _reads(n) & produced}
        if len(read_outside) == 1 and not produced & graph_outputs:
            branches.append(Branch(stream, tuple(sorted(private)), read_outside.pop()))
    return branches


def _empty_values(model: onnx.ModelProto, branches: list[Branch]) -> dict[str, np.ndarray]:
    """Each branch's output on an all-zero input, one row (run on a batch of two with onnxruntime).

    A branch whose output does not have one row per file, alike for every all-zero file, is left
    out of the result: its output cannot be stood in for by one row expanded to the batch.
    """
    import onnxruntime as ort

    nodes = list(model.graph.node)
    depends = _dependencies(nodes, (i.name for i in model.graph.input))
    chosen = {i for b in branches for i in b.positions}
    needed = set().union(*(_reads(nodes[i]) for i in chosen))
    for i in reversed(range(len(nodes))):  # input-free nodes outside the branches that they read
        if i not in chosen and not depends[i] and set(nodes[i].output) & needed:
            chosen.add(i)
            needed |= _reads(nodes[i])
    probe_graph = helper.make_graph(
        [nodes[i] for i in sorted(chosen)],
        "empty_stream_probe",
        [i for i in model.graph.input if i.name in {b.stream for b in branches}],
        [helper.make_empty_tensor_value_info(b.output) for b in branches],
        [t for t in model.graph.initializer if t.name in needed],
    )
    probe = helper.make_model(probe_graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {}
    for value in session.get_inputs():
        shape = [d if isinstance(d, int) else 2 for d in value.shape[1:]]
        feeds[value.name] = np.zeros([2, *shape], np.float32)
    outputs = session.run([b.output for b in branches], feeds)
    return {
        b.output: value[:1]
        for b, value in zip(branches, outputs, strict=True)
        if value.ndim >= 1 and value.shape[0] == 2 and np.array_equal(value[0], value[1])
    }


def skip_empty_streams(model: onnx.ModelProto, streams: Iterable[str] = EMPTY_WHEN_ABSENT) -> onnx.ModelProto:
    """Return a copy of ``model`` whose ``streams`` encoders run only when their input is not all zero.

    For each stream the rewrite adds ``present = ReduceL1(stream) != 0`` and an ``If`` whose
    ``then`` branch holds the encoder's nodes unchanged and whose ``else`` branch expands the
    embedding of a zero input to the batch size. A batch in which any file has the stream runs the
    encoder for the whole batch, so every output is what the original graph computes.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    branches = find_branches(out, streams)
    empty = _empty_values(out, branches) if branches else {}
    branches = [b for b in branches if b.output in empty]
    if not branches:
        return out
    graph = out.graph
    nodes = list(graph.node)
    moved = {i for b in branches for i in b.positions}
    # Each If takes the place of its branch's last node: everything the branch reads comes before
    # it, and everything that reads its output comes after.
    switches = {b.positions[-1]: _switch(b, [nodes[i] for i in b.positions], empty[b.output], graph) for b in branches}
    rewritten: list[onnx.NodeProto] = []
    for i, node in enumerate(nodes):
        if i not in moved:
            rewritten.append(node)
        rewritten += switches.get(i, [])
    del graph.node[:]
    graph.node.extend(rewritten)
    onnx.checker.check_model(out)
    return out


def _switch(branch: Branch, nodes: list[onnx.NodeProto], value: np.ndarray, graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes that stand in for ``branch``: the all-zero test and the ``If`` (adds its initializers)."""
    s = branch.stream
    elem_type = helper.np_dtype_to_tensor_dtype(value.dtype)
    graph.initializer.extend(
        [
            numpy_helper.from_array(value, f"{s}__empty_value"),
            numpy_helper.from_array(np.asarray(value.shape[1:], np.int64), f"{s}__empty_tail"),
            numpy_helper.from_array(np.zeros((), np.float32), f"{s}__zero"),
        ]
    )
    then_graph = helper.make_graph(
        nodes, f"{s}__encode", [], [helper.make_tensor_value_info(branch.output, elem_type, None)]
    )
    else_graph = helper.make_graph(
        [
            helper.make_node("Shape", [s], [f"{s}__batch"], end=1),
            helper.make_node("Concat", [f"{s}__batch", f"{s}__empty_tail"], [f"{s}__shape"], axis=0),
            helper.make_node("Expand", [f"{s}__empty_value", f"{s}__shape"], [f"{s}__expanded"]),
        ],
        f"{s}__empty",
        [],
        [helper.make_tensor_value_info(f"{s}__expanded", elem_type, None)],
    )
    return [
        helper.make_node("ReduceL1", [s], [f"{s}__l1"], keepdims=0),
        helper.make_node("Equal", [f"{s}__l1", f"{s}__zero"], [f"{s}__absent"]),
        helper.make_node("Not", [f"{s}__absent"], [f"{s}__present"]),
        helper.make_node(
            "If", [f"{s}__present"], [branch.output], then_branch=then_graph, else_branch=else_graph,
            name=f"{s}__skip_if_empty",
        ),
    ]
