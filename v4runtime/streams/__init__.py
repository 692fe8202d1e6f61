"""The eight input streams of the V4 detector (see the V4 Architecture Guide, "Streams").

``extract_streams(path | bytes)`` returns a :class:`Streams`: eight float32 arrays with the shapes
fixed in :mod:`v4runtime.streams.spec`, the capability mask, and facts about the file.
"""

from v4runtime.streams.extract import ImageInfo, Streams, extract_streams, stack_streams
from v4runtime.streams.spec import (
    CAPABILITY_SLICE,
    METHODS,
    STREAM_NAMES,
    STREAM_SPECS,
    input_shapes,
    stack_inputs,
    zero_inputs,
)

__all__ = [
    "CAPABILITY_SLICE",
    "METHODS",
    "STREAM_NAMES",
    "STREAM_SPECS",
    "ImageInfo",
    "Streams",
    "extract_streams",
    "input_shapes",
    "stack_inputs",
    "stack_streams",
    "zero_inputs",
]
