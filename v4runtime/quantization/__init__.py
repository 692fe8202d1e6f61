"""INT8 quantisation of the detector, the false-positive-rate gate, and the choice of variant.

- ``quantize_model``: onnxruntime pre-processing, static QDQ quantisation (S8S8, per-channel
  weights) calibrated on a mix of clean and stego images; settings and sizes recorded in the
  output's metadata; atomic write.
- ``verify_quantization``: the gate (decision agreement, ΔFPR, ΔTPR per method, probability
  difference, size ratio, INT8/FP32 latency ratio) with SQNR-ranked worst layers on failure.
- ``choose_variant``: INT8 only if the gate passed and INT8 measured faster on this host.
"""

from __future__ import annotations

from v4runtime.quantization.gate import GateReport, Tolerances, verify_quantization
from v4runtime.quantization.host import HostFeatures, host_features
from v4runtime.quantization.labels import ImageSet, LabelledImage, load_image_set
from v4runtime.quantization.layer_loss import LayerLoss, layer_losses
from v4runtime.quantization.quantize import (
    CALIBRATION_METHODS,
    QuantizeResult,
    quantize_model,
    read_quantization_metadata,
)
from v4runtime.quantization.report import render_markdown
from v4runtime.quantization.variant import choose_variant

__all__ = [
    "CALIBRATION_METHODS",
    "GateReport",
    "HostFeatures",
    "ImageSet",
    "LabelledImage",
    "LayerLoss",
    "QuantizeResult",
    "Tolerances",
    "choose_variant",
    "host_features",
    "layer_losses",
    "load_image_set",
    "quantize_model",
    "read_quantization_metadata",
    "render_markdown",
    "verify_quantization",
]
