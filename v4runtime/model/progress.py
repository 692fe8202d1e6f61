"""A dependency-free progress bar for long training steps (stderr; redraws only on a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Count steps of a known total; draw ``label [#####.....] 12/40 3.1s`` on ``stream``.

    On a terminal the line is redrawn in place; otherwise (CI logs, pipes) only the final line
    is written, so logs stay short.
    """

    def __init__(self, total: int, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self.start = time.perf_counter()
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.suffix = ""

    def advance(self, steps: int = 1, suffix: str = "") -> None:
        """Record ``steps`` more steps, with an optional note shown after the counter."""
        self.done = min(self.done + steps, self.total)
        self.suffix = suffix
        if self.live:
            self.stream.write("\r" + self._line())
            self.stream.flush()

    def close(self) -> None:
        """Write the final state of the bar and end the line."""
        self.stream.write(("\r" if self.live else "") + self._line() + "\n")
        self.stream.flush()

    def _line(self) -> str:
        filled = int(self.width * self.done / self.total)
        elapsed = time.perf_counter() - self.start
        bar = "#" * filled + "." * (self.width - filled)
        return f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:.1f}s {self.suffix}".rstrip()
