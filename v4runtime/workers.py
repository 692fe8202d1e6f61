"""Worker processes that never outlive the command that started them, and SIGTERM handled like Ctrl-C.

A pool worker waits on its task queue forever. When the command that started it dies without
shutting the pool down (``kill``, ``timeout``, a supervisor's SIGTERM, the OOM killer's SIGKILL),
nobody ever writes to that queue again: the workers sleep on as orphans, each holding a model
session. :func:`exit_with_parent`, run first in every pool initializer, ends a worker once its
parent is gone. :func:`terminate_as_interrupt` makes SIGTERM unwind the command like Ctrl-C, so
its ``finally`` blocks shut pools down and remove partial outputs. :func:`signals_deferred` holds
both signals while a pool starts, and :func:`ignore_interrupts` leaves Ctrl-C to a worker's parent.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM wait: they take effect, once, when it ends.

    For work that must not stop half-way, such as starting a process pool: a KeyboardInterrupt
    between its forks left workers that no one told to stop, and the exit waited on them forever.
    SIGINT is also blocked in this thread, so that processes forked in the block start with it
    blocked until :func:`ignore_interrupts`. Handlers can be swapped in the main thread only; no
    other thread ever raises KeyboardInterrupt.
    """
    masked = hasattr(signal, "pthread_sigmask")
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if masked else set()
    caught: list[int] = []
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not None:  # None: set outside Python, it could not be put back
                previous[signum] = signal.signal(signum, lambda received, frame: caught.append(received))
    try:
        yield
    finally:
        if masked:  # a SIGINT held by the mask arrives here, and is caught like the others
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            _replay(signum, previous[signum])


def _replay(signum: int, handler: Any) -> None:
    """Act on a signal held back by :func:`signals_deferred` as its own handler would have."""
    if callable(handler):
        handler(signum, None)  # KeyboardInterrupt, Terminated
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)


def ignore_interrupts() -> None:
    """Call first in a pool worker whose parent handles Ctrl-C: SIGINT is ignored from now on.

    A SIGINT that came while the worker was forked inside :func:`signals_deferred` is pending:
    ignoring it discards it; then SIGINT is unblocked.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


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
