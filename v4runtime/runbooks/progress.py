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

    def line(self, text: str = "") -> None:
        """Print a whole line (clearing a spinner first)."""
        with self._lock:
            if self.tty and self._label:
                self.stream.write("\r\033[2K")
            self.stream.write(text + "\n")
            self.stream.flush()

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
            self.stream.write(f"\r\033[2K{FRAMES[self._frame]} {self._label}  {elapsed:5.1f}s")
            self.stream.flush()

    def end(self, text: str) -> None:
        """The command finished: replace the spinner by a result line."""
        self.line(f"{self._label} {text}")
        self._label = ""

    def output(self, text: str, lines: int = 20) -> None:
        """Show the last ``lines`` lines of a command's (masked) output, indented."""
        tail = text.rstrip("\n").splitlines()[-lines:]
        for row in tail:
            self.line(f"    | {row}")
