"""The V4 detector: architecture, training and export (``train`` extra), model cards and the
registry of shipped models (runtime; no PyTorch).

Importing this package never imports PyTorch; only :mod:`v4runtime.model.architecture`,
:mod:`v4runtime.model.export` and :mod:`v4runtime.model.training` do. The names below load on
first use, so the command line does not pay for ONNX when it only registers ``train``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["DEFAULT_MODEL", "ModelCard", "ResolvedModel", "resolve_model"]

if TYPE_CHECKING:  # pragma: no cover
    from v4runtime.model.card import ModelCard
    from v4runtime.model.registry import DEFAULT_MODEL, ResolvedModel, resolve_model

_HOME = {"ModelCard": "v4runtime.model.card"}


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(_HOME.get(name, "v4runtime.model.registry")), name)
    raise AttributeError(name)
