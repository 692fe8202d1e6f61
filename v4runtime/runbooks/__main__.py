"""``python -m v4runtime.runbooks ...``: the ``runbook`` subcommands without the rest of the CLI.

Same as ``v4runtime runbook ...``; it imports only this package, so it starts fast and keeps
working while other commands are being changed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from v4runtime.errors import V4Error
from v4runtime.runbooks.commands import register


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` as ``runbook`` subcommands and run; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m v4runtime.runbooks")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["runbook", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except V4Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
