"""The ``v4runtime`` command line: parses, delegates, prints.

Each subcommand lives in the module that owns the capability; that module exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments, returning the exit status). This file holds no logic of its own.

Exit status: each command documents its own (``scan``: 1 means stego found). On top of those,
every command exits 2 with one line ``error: ...`` on standard error for bad input (a
:class:`~v4runtime.errors.V4Error`), for results that cannot be written (a full disk) and for an
unexpected error (a bug: set ``V4_DEBUG=1`` to see its traceback); 130 when interrupted, 143 on
SIGTERM, 141 when the reader of its output went away. Never 1, so an error is never mistaken for a
finding.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from v4runtime import __version__
from v4runtime.errors import V4Error
from v4runtime.files import output_error
from v4runtime.workers import EXIT_TERMINATED, Terminated, terminate_as_interrupt

#: Exit status of an error: bad input, results that cannot be written, an unexpected error.
EXIT_ERROR = 2
#: Exit status after Ctrl-C (128 + SIGINT), and when the reader of standard output went away (128 + SIGPIPE).
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141
#: Environment variable that, set to anything but ``""`` or ``0``, prints an unexpected error's traceback.
DEBUG_ENV = "V4_DEBUG"

#: Modules that contribute subcommands, in the order they appear in ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "v4runtime.doctor",
    "v4runtime.up",
    "v4runtime.datasets.commands",
    "v4runtime.model.commands",
    "v4runtime.scanner_commands",
    "v4runtime.quantization_commands",
    "v4runtime.monitoring.commands",
    "v4runtime.service.commands",
    "v4runtime.runbooks.commands",
    "v4runtime.bench",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser from every command module."""
    parser = argparse.ArgumentParser(
        prog="v4runtime",
        description="V4: an 8-stream steganography detector and its runtime.",
    )
    parser.add_argument("--version", action="version", version=f"v4runtime {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # pragma: no cover - only while a capability is being built
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``v4runtime`` console script; returns the exit status."""
    try:
        return _run(argv)
    except V4Error as exc:
        return _fail(str(exc))
    except Terminated:
        print("terminated", file=sys.stderr)
        return _settle_stdout(EXIT_TERMINATED)
    except KeyboardInterrupt:  # also while the command modules are imported
        print("interrupted", file=sys.stderr)
        return _settle_stdout(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`v4runtime ... | head`): stop quietly, like other Unix tools.
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # anything else is a bug: one line and status 2, never 1 ("stego found")
        return _unexpected(exc)


def _run(argv: Sequence[str] | None) -> int:
    """Parse ``argv``, run the command, flush its output; errors are left to :func:`main`."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        # `scan a.png --jsonl b.png`: argparse stops filling a positional list at the first option.
        # A command that names its list in `trailing_positionals` gets the stray paths back.
        target = getattr(args, "trailing_positionals", None)
        if target is None or any(extra.startswith("-") for extra in extras):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        getattr(args, target).extend(extras)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_ERROR
    # SIGTERM (`kill`, `timeout`, a supervisor) unwinds like Ctrl-C: pools are shut down and
    # partial outputs removed by the commands' own clean-up. Servers and runbooks set their own.
    with terminate_as_interrupt():
        status = int(func(args) or 0)
    try:  # output still buffered fails here, not in the interpreter's exit (status 120, a traceback)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise output_error(exc) from exc
    return status


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return _settle_stdout(EXIT_ERROR)


def _unexpected(exc: Exception) -> int:
    """One line for an exception no command handles; its traceback too with ``V4_DEBUG`` set."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(exc, pydantic.ValidationError):
        # A command that applies its CLI options on top of the settings (`monitor serve --port 70000`)
        # re-validates them; the result is a bad setting like any other, not a traceback.
        from v4runtime.config import config_error

        return _fail(config_error(exc))
    if isinstance(exc, OSError) and not _stdout_flushes():  # a print() of any command on a full disk
        return _fail(str(output_error(exc)))
    message = f"unexpected {type(exc).__name__}: {' '.join(str(exc).split()) or 'no message'}"
    if os.environ.get(DEBUG_ENV, "") in ("", "0"):
        return _fail(f"{message} (rerun with {DEBUG_ENV}=1 to see the traceback)")
    traceback.print_exception(exc, file=sys.stderr)
    return _fail(message)


def _stdout_flushes() -> bool:
    """Whether standard output takes what it holds: a write that failed left its bytes behind."""
    try:
        sys.stdout.flush()
    except OSError:
        return False
    return True


def _settle_stdout(status: int) -> int:
    """Flush standard output; where it cannot be written, send it to ``/dev/null`` so that the
    interpreter's own flush at exit does not fail again with a traceback. Returns ``status``."""
    if not _stdout_flushes():
        _discard_stdout()
    return status


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor (a test's captured output): nothing to flush at exit
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
