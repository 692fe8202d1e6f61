"""The ``v4runtime`` command line: parses, delegates, prints.

Each subcommand lives in the module that owns the capability; that module exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments, returning the exit status). This file holds no logic of its own.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from v4runtime import __version__
from v4runtime.config import config_error
from v4runtime.errors import V4Error
from v4runtime.workers import EXIT_TERMINATED, Terminated, terminate_as_interrupt

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
        return 2
    try:
        # SIGTERM (`kill`, `timeout`, a supervisor) unwinds like Ctrl-C: pools are shut down and
        # partial outputs removed by the commands' own clean-up. Servers and runbooks set their own.
        with terminate_as_interrupt():
            return int(func(args) or 0)
    except V4Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        # A command that applies its CLI options on top of the settings (`monitor serve --port 70000`)
        # re-validates them; the result is a bad setting like any other, not a traceback.
        print(f"error: {config_error(exc)}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`v4runtime ... | head`): stop quietly, like other Unix tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
