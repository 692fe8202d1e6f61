"""The V4 detector network (PyTorch; needs the ``train`` extra).

One small encoder per stream turns each of the eight inputs of
:data:`v4runtime.streams.spec.STREAM_SPECS` into a 64-dimensional embedding. A learned gate
(softmax over the eight streams, computed from all embeddings) scales each embedding (between
0.8 and 2.4 times its size: the gate emphasises, it never silences a stream) before the
concatenation, so the gate weights say which views of the file drove a decision; they are an
output of the graph (``gate_weights``). Two heads read the fused vector: the stego probability
(sigmoid) and the method distribution, a softmax whose logits are masked by the capability mask
``format[0:5]`` inside the graph, so a method the file cannot carry always gets probability 0.
"""

from __future__ import annotations

import torch
from torch import nn

from v4runtime.streams.spec import (
    CAPABILITY_SLICE,
    CONTENT_FEATURES,
    FORMAT_FEATURES,
    METHODS,
    STREAM_NAMES,
    STREAM_SPECS,
)

#: Width of every per-stream embedding.
EMBED = 64
#: Widths of the fusion trunk's hidden layers. Most parameters live here: dense weights are what
#: INT8 shrinks 4x, while the convolutions (the FLOPs) stay small.
TRUNK = (768, 384, 64)
#: Share of every embedding that passes whatever the gate says: the gate can emphasise a stream up
#: to 2.4x but never silence one (a silenced ``content`` stream let a few clean files be decided on
#: the constant embedding of an empty ``alpha`` stream, at probability 1.0).
GATE_FLOOR = 0.8
#: Logit added to masked-out methods: exp(-1e4) underflows to exactly 0 in float32.
MASK_PENALTY = 1.0e4


class PlaneEncoder(nn.Module):
    """Strided convolutions over a (C, 256, 256) plane stream, then mean+max pooling.

    The first layer is a 4x4/stride-4 patch embedding: it keeps the cost of four plane streams
    within the FLOP budget while still seeing every pixel (LSB payloads are dense, local signals).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 12, kernel_size=4, stride=4),
            nn.ReLU(),
            nn.Conv2d(12, 24, kernel_size=4, stride=4),
            nn.ReLU(),
            nn.Conv2d(24, 32, kernel_size=2, stride=2),
            nn.ReLU(),
        )
        self.proj = nn.Linear(64, EMBED)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return torch.relu(self.proj(pooled))


class SequenceEncoder(nn.Module):
    """1-D convolutions over a (C, L) byte or palette stream, then mean+max pooling."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(channels, 16, kernel_size=stride * 2, stride=stride, padding=stride // 2),
            nn.ReLU(),
            nn.Conv1d(16, 32, kernel_size=4, stride=4),
            nn.ReLU(),
        )
        self.proj = nn.Linear(64, EMBED)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        return torch.relu(self.proj(pooled))


class VectorEncoder(nn.Module):
    """Standardise a feature vector (statistics fitted on the training set), then a 2-layer MLP."""

    def __init__(self, features: int, hidden: int = 128) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("inv_std", torch.ones(features))
        self.body = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, EMBED), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.clamp((x - self.mean) * self.inv_std, -8.0, 8.0)
        return self.body(z)


def _encoder(name: str, shape: tuple[int, ...]) -> nn.Module:
    if len(shape) == 3:
        return PlaneEncoder(shape[0])
    if len(shape) == 2:
        return SequenceEncoder(shape[0], stride=4 if shape[1] > 512 else 2)
    return VectorEncoder(shape[0], hidden=256 if shape[0] >= 64 else 128)


class V4Detector(nn.Module):
    """The 8-input detector; ``forward`` takes the streams in ``STREAM_NAMES`` order.

    Returns ``(stego_probability (N,), method_probabilities (N, 5), gate_weights (N, 8))``, plus
    the raw ``stego_logit`` and masked ``method_logits`` when ``with_logits`` is set (training).
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({s.name: _encoder(s.name, s.shape) for s in STREAM_SPECS})
        # Every embedding is normalised before the gate scales it: no stream (least of all the
        # constant embedding of an empty one) can dominate the fused vector's range, which is
        # what an INT8 activation has to represent.
        self.embed_norms = nn.ModuleDict({s.name: nn.LayerNorm(EMBED) for s in STREAM_SPECS})
        n = len(STREAM_SPECS)
        self.gate = nn.Sequential(nn.Linear(n * EMBED, 64), nn.ReLU(), nn.Linear(64, n))
        widths = (n * EMBED, *TRUNK)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
            layers += [nn.Linear(a, b), nn.ReLU()]
            if i < len(TRUNK) - 1:
                layers.append(nn.Dropout(0.1))  # training only; export runs in eval mode
        # Normalising the fused vector bounds the trunk's input whatever the gate and the encoders do.
        self.norm = nn.LayerNorm(n * EMBED)
        self.trunk = nn.Sequential(*layers)
        self.stego_head = nn.Linear(TRUNK[-1], 1)
        self.method_head = nn.Linear(TRUNK[-1], len(METHODS))
        # forward() names its arguments after the streams; fail loudly if the contract moves.
        assert STREAM_NAMES == ("pixel", "meta", "alpha", "lsb", "palette", "palette_lsb", "format", "content")
        assert len(METHODS) <= FORMAT_FEATURES and CONTENT_FEATURES > 0

    def set_feature_stats(self, name: str, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store standardisation statistics of a vector stream (``format`` or ``content``)."""
        enc = self.encoders[name]
        if not isinstance(enc, VectorEncoder):
            raise ValueError(f"stream {name!r} is not a vector stream")
        enc.mean.copy_(mean)
        # Features are bounded in [0, 1]; a floor on the spread keeps a feature that was (nearly)
        # constant in training from exploding on an unseen file.
        enc.inv_std.copy_(1.0 / torch.clamp(std, min=0.1))

    def fused(self, *streams: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the fused representation (N, TRUNK[-1]) and the gate weights (N, 8)."""
        embeddings = [
            self.embed_norms[name](self.encoders[name](x)) for name, x in zip(STREAM_NAMES, streams, strict=True)
        ]
        stacked = torch.stack(embeddings, dim=1)  # (N, 8, EMBED)
        gates = torch.softmax(self.gate(stacked.flatten(1)), dim=1)  # (N, 8)
        # A uniform gate (1/8 each) leaves embeddings unchanged; the floor keeps every stream in play.
        scale = GATE_FLOOR + (1.0 - GATE_FLOOR) * gates * len(STREAM_NAMES)
        gated = stacked * scale.unsqueeze(2)
        return self.trunk(self.norm(gated.flatten(1))), gates

    def forward(  # noqa: PLR0913 - one argument per ONNX input, named like it
        self,
        pixel: torch.Tensor,
        meta: torch.Tensor,
        alpha: torch.Tensor,
        lsb: torch.Tensor,
        palette: torch.Tensor,
        palette_lsb: torch.Tensor,
        format: torch.Tensor,  # noqa: A002 - the stream's name
        content: torch.Tensor,
        with_logits: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        streams = (pixel, meta, alpha, lsb, palette, palette_lsb, format, content)
        h, gates = self.fused(*streams)
        stego_logit = self.stego_head(h).squeeze(1)
        capability = format[:, CAPABILITY_SLICE]
        method_logits = self.method_head(h) - (1.0 - (capability > 0.5).float()) * MASK_PENALTY
        outputs = (torch.sigmoid(stego_logit), torch.softmax(method_logits, dim=1), gates)
        if with_logits:
            return (*outputs, stego_logit, method_logits)
        return outputs


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
