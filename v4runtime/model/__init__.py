"""The V4 detector: architecture, training and export (``train`` extra), model cards and the
registry of shipped models (runtime; no PyTorch).

Importing this package never imports PyTorch; only :mod:`v4runtime.model.architecture`,
:mod:`v4runtime.model.export` and :mod:`v4runtime.model.training` do.
"""

from v4runtime.model.card import ModelCard
from v4runtime.model.registry import DEFAULT_MODEL, ResolvedModel, resolve_model

__all__ = ["DEFAULT_MODEL", "ModelCard", "ResolvedModel", "resolve_model"]
