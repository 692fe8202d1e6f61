"""V4 Runtime: an 8-stream steganography detector, its runtime, monitoring API and runbooks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("v4runtime")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
