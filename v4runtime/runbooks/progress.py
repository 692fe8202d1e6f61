"""Live progress of a run: a spinner with elapsed time on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Progress:
    """Prints what the runner does. ``tty`` selects the spinner; output always goes to ``stream``."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._lock = threading.Lock()
        self._label = ""
        self._frame = 0
        self._gone = False

    def _write(self, text: str) -> None:
        """Write and flush; a terminal that went away (hang-up, closed pipe) must not stop a run or its rollbacks."""
        if self._gone:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # EIO/EPIPE, or the stream was closed
            self._gone = True

    def line(self, text: str = "") -> None:
        """Print a whole line (clearing a spinner first)."""
        with self._lock:
            self._write(("\r\033[2K" if self.tty and self._label else "") + text + "\n")

    def begin(self, label: str, command: str) -> None:
        """A command starts: show ``label`` and (on plain output) the command."""
        self._label = label
        if not self.tty:
            self.line(f"{label} ...")
            for text in command.splitlines():
                self.line(f"    $ {text}")

    def tick(self, elapsed: float) -> None:
        """Called while the command runs; redraws the spinner on a terminal."""
        if not self.tty:
            return
        with self._lock:
            self._frame = (self._frame + 1) % len(FRAMES)
            self._write(f"\r\033[2K{FRAMES[self._frame]} {self._label}  {elapsed:5.1f}s")

    def end(self, text: str) -> None:
        """The command finished: replace the spinner by a result line."""
        self.line(f"{self._label} {text}")
        self._label = ""

    def output(self, text: str, lines: int = 20, width: int = 1000) -> None:
        """Show the last ``lines`` lines of a command's (masked) output, indented, each cut at ``width``."""
        tail = text.rstrip("\n").splitlines()[-lines:]
        for row in tail:
            cut = f" [... {len(row) - width} more characters]" if len(row) > width else ""
            self.line(f"    | {row[:width]}{cut}")
