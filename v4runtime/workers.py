"""Worker processes that never outlive the command that started them, and SIGTERM handled like Ctrl-C.

A pool worker waits on its task queue forever. When the command that started it dies without
shutting the pool down (``kill``, ``timeout``, a supervisor's SIGTERM, the OOM killer's SIGKILL),
nobody ever writes to that queue again: the workers sleep on as orphans, each holding a model
session. :func:`exit_with_parent`, run first in every pool initializer, ends a worker once its
parent is gone. :func:`terminate_as_interrupt` makes SIGTERM unwind the command like Ctrl-C, so
its ``finally`` blocks shut pools down and remove partial outputs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: Seconds between two checks of a worker's parent.
PARENT_POLL_S = 0.5
#: Exit status of a process stopped by SIGTERM (128 + 15), the shell's convention.
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds the command like Ctrl-C does (``except KeyboardInterrupt`` sees it)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; elsewhere a no-op)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_with_parent(poll_s: float = PARENT_POLL_S) -> None:
    """Call first in a pool worker: exit as soon as the parent process is gone.

    Also gives SIGTERM back its default action, which a forked worker would otherwise inherit
    from a parent inside :func:`terminate_as_interrupt` (a pool's ``terminate`` must stop it).
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:  # an orphan is re-parented (to init or a subreaper)
            time.sleep(poll_s)
        os._exit(EXIT_TERMINATED)  # no cleanup to run: the results have nobody to go to

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
