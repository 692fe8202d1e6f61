"""``v4runtime runbook ...``: list, show, run, log, validate, render.

Thin wrappers: every subcommand calls the same functions the Python API offers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from v4runtime.cli_types import int_at_least

if TYPE_CHECKING:
    from v4runtime.runbooks.runner import RunResult


def register(subparsers: Any) -> None:
    """Add the ``runbook`` command and its subcommands to the CLI."""
    parser = subparsers.add_parser(
        "runbook",
        help="list, show, run and audit executable runbooks",
        description="Executable runbooks: YAML files under runbooks/ that run, verify, roll back and render as docs.",
    )
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    sub = parser.add_subparsers(dest="runbook_command", metavar="SUBCOMMAND")

    def with_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--dir", type=Path, help="runbook directory (default: $V4_RUNBOOK_DIR or ./runbooks upwards)")
        return p

    p = with_dir(sub.add_parser("list", help="list the runbooks"))
    p.set_defaults(func=cmd_list)

    p = with_dir(sub.add_parser("show", help="show a runbook's parameters and steps"))
    p.add_argument("name", help="runbook name (file stem) or path")
    p.set_defaults(func=cmd_show)

    p = with_dir(sub.add_parser("run", help="run a runbook (or print it with --dry-run)"))
    p.add_argument("name", help="runbook name (file stem) or path")
    p.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE", help="set a parameter")
    p.add_argument("--dry-run", action="store_true", help="print every command with parameters substituted; run nothing")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--from", dest="from_step", metavar="STEP", help="start at this step")
    group.add_argument("--only", action="append", default=[], metavar="STEP", help="run only this step (repeatable)")
    p.add_argument("--yes", "-y", action="store_true", help="answer yes at every confirmation gate")
    p.add_argument("--ci", action="store_true", help="skip steps and runbooks marked ci_exempt (as CI does)")
    p.add_argument("--log", type=Path, help="audit log file (default: $V4_RUNBOOK_LOG or ~/.local/state/...)")
    p.add_argument("--keep-run-dir", action="store_true", help="keep the per-run scratch directory")
    p.add_argument(
        "--rehearse-rollback",
        action="store_true",
        help="rollback drill: after the last step passes, run every rollback in reverse order",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("log", help="show the audit log")
    p.add_argument("--run", metavar="ID", help="only events of this run (a prefix of the id is enough)")
    p.add_argument("--log", type=Path, help="audit log file (default: $V4_RUNBOOK_LOG or ~/.local/state/...)")
    p.add_argument("--json", action="store_true", help="print the raw JSON lines")
    p.add_argument("--last", type=int_at_least(1), metavar="N", help="only the last N events (N >= 1)")
    p.set_defaults(func=cmd_log)

    p = with_dir(sub.add_parser("validate", help="validate runbooks against the schema"))
    p.add_argument("files", nargs="*", type=Path, help="files to check (default: every runbook)")
    p.set_defaults(func=cmd_validate)

    p = with_dir(sub.add_parser("record", help="fill a record template (e.g. incident) from a run"))
    p.add_argument("template", help="template name in runbooks/templates/ (incident, post-rollback)")
    p.add_argument("--run", metavar="ID", help="run id (or prefix) from the audit log; blank form without it")
    p.add_argument("--log", type=Path, help="audit log file (default: $V4_RUNBOOK_LOG or ~/.local/state/...)")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("schema", help="print the runbook JSON Schema (for editors and other tools)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("coverage", help="which runbook steps CI executes end to end (for the fence gate)")
    p.add_argument("--root", type=Path, default=Path("."), help="repository root (default: .)")
    p.add_argument("--json", action="store_true", help="one JSON object per step")
    p.set_defaults(func=cmd_coverage)

    p = with_dir(sub.add_parser("render", help="print the Markdown page of a runbook"))
    p.add_argument("name", help="runbook name (file stem) or path")
    p.set_defaults(func=cmd_render)


def _dir(args: argparse.Namespace) -> Path:
    from v4runtime.runbooks.loader import find_dir

    return args.dir if args.dir else find_dir()


def cmd_list(args: argparse.Namespace) -> int:
    """Print one line per runbook: name, number of steps, title."""
    from v4runtime.runbooks.loader import load_all

    books = load_all(_dir(args))
    width = max((len(b.name) for b in books), default=4)
    for book in books:
        print(f"{book.name:<{width}}  {len(book.steps):>2} steps  {book.title}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print a runbook's purpose, parameters and steps as plain text."""
    from v4runtime.runbooks.loader import load

    book = load(args.name, args.dir)
    print(f"{book.title} ({book.name}, {book.path})\n")
    print(book.purpose.strip() + "\n")
    if book.params:
        print("Parameters:")
        for p in book.params:
            default = "required" if p.required else f"default {'***' if p.secret else p.default!r}"
            extra = [f"one of {p.enum}" if p.enum else "", f"pattern {p.pattern}" if p.pattern else "",
                     "secret" if p.secret else ""]
            detail = ", ".join(x for x in [p.type, default, *extra] if x)
            print(f"  {p.name} ({detail}): {p.description}")
        print()
    print("Steps:")
    for i, s in enumerate(book.steps, 1):
        print(f"  {i}. {s.id}: {s.description.strip().splitlines()[0]}")
        rows = [("run", s.run), ("verify", s.verify.run), ("expect", f"/{s.verify.expect}/" if s.verify.expect else None),
                ("rollback", s.rollback), ("confirm", s.confirm), ("ci exempt", s.ci_exempt)]
        for label, text in rows:
            if text:
                print(f"     {label + ':':<10} {_brief(text)}")
    print(f"\nPreview with: v4runtime runbook run {book.name} --dry-run")
    return 0


def _brief(command: str) -> str:
    """First line of a command, with a marker when there are more."""
    lines = command.strip().splitlines()
    return lines[0] + (f"  (+{len(lines) - 1} lines)" if len(lines) > 1 else "")


def cmd_run(args: argparse.Namespace) -> int:
    """Run a runbook; returns 0, 1 (a step failed), 130 (interrupted), 75 (already running) or 74 (log failed)."""
    from v4runtime.runbooks.loader import load
    from v4runtime.runbooks.lock import RunbookLocked
    from v4runtime.runbooks.params import parse_assignments
    from v4runtime.runbooks.runner import EXIT_LOCKED, EXIT_LOG_FAILED, EXIT_OK, Runner, RunOptions

    book = load(args.name, args.dir)
    options = RunOptions(
        params=parse_assignments(args.param),
        dry_run=args.dry_run,
        from_step=args.from_step,
        only=args.only,
        yes=args.yes,
        ci=args.ci,
        log_path=args.log,
        keep_run_dir=args.keep_run_dir,
        rehearse_rollback=args.rehearse_rollback,
    )
    try:
        result = Runner(book, options).run()
    except RunbookLocked as exc:
        _tell(f"error: {exc}")
        return EXIT_LOCKED
    if result.log_error:
        _tell(f"error: the audit log lacks {result.log_lost} event(s) of run {result.run_id} ({result.log_error}); "
              "they were printed on stderr as JSON lines")
    if result.exit_code not in (EXIT_OK, EXIT_LOG_FAILED):
        _tell(_failure(book.name, result))
    return result.exit_code


def _failure(name: str, result: RunResult) -> str:
    """The closing error line of a run that failed, was interrupted, or whose rollback drill failed."""
    if result.status == "rehearsed":
        return f"error: runbook {name!r}: a rollback failed in the drill (run {result.run_id})"
    verb = "was interrupted at" if result.status == "interrupted" else "failed at"
    return (f"error: runbook {name!r} {verb} step {result.failed_step!r} (run {result.run_id}; "
            f"see `v4runtime runbook log --run {result.run_id}`)")


def _tell(message: str) -> None:
    """Print to stderr; after a hang-up there may be no terminal left, and the exit status must survive."""
    with contextlib.suppress(OSError, ValueError):
        print(message, file=sys.stderr, flush=True)


def _fmt(event: dict[str, Any]) -> str:
    when = str(event.get("when", ""))[:23]
    parts = [when, str(event.get("run_id", "")), str(event.get("runbook", "")), f"{event.get('event', ''):<12}"]
    if event.get("step"):
        parts.append(str(event["step"]))
    for key in ("status", "exit_code", "verify", "duration_s", "answer", "reason", "failed_step"):
        if event.get(key) is not None:
            parts.append(f"{key}={event[key]}")
    if event.get("event") == "cwd_recreated":
        parts.append(f"cwd={event.get('cwd')}")
    if event.get("event") == "run_start":
        parts.append(f"who={event.get('who')}")
        if event.get("params"):
            parts.append("params=" + json.dumps(event["params"], sort_keys=True))
    return "  ".join(parts)


def cmd_log(args: argparse.Namespace) -> int:
    """Print audit log events (all, one run's, or the last N)."""
    from v4runtime.runbooks.audit import default_path, read

    events = list(read(args.log or default_path(), args.run))
    if args.last:
        events = events[-args.last :]
    for event in events:
        print(json.dumps(event) if args.json else _fmt(event))
    if not events:
        print("no events" + (f" for run {args.run}" if args.run else ""), file=sys.stderr)
        return 1
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate runbooks; prints every problem (file, step, field) and returns 1 when any is invalid."""
    from v4runtime.errors import RunbookError
    from v4runtime.runbooks.loader import load_file, runbook_files
    from v4runtime.runbooks.schema import RunbookValidationError

    files = args.files or runbook_files(_dir(args))
    bad, steps = 0, 0
    for path in files:  # one bad or unreadable file does not hide the verdict on the others
        try:
            steps += len(load_file(path).steps)
        except RunbookValidationError as exc:
            bad += 1
            for problem in exc.problems:
                print(f"invalid: {problem}", file=sys.stderr)
        except RunbookError as exc:
            bad += 1
            print(f"invalid: {exc}", file=sys.stderr)
    print(f"{len(files) - bad} of {len(files)} runbook(s) valid ({steps} steps)")
    return 1 if bad else 0


def cmd_render(args: argparse.Namespace) -> int:
    """Print the Markdown page of a runbook (what the docs site shows)."""
    from v4runtime.runbooks.loader import load
    from v4runtime.runbooks.render import render_page

    print(render_page(load(args.name, args.dir)), end="")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    """Print a record template filled from a run of the audit log (blank without ``--run``)."""
    from v4runtime.runbooks.audit import default_path
    from v4runtime.runbooks.records import run_context
    from v4runtime.runbooks.render import render_template

    context = run_context(args.log or default_path(), args.run) if args.run else {"run": None}
    print(render_template(_dir(args) / "templates", args.template, context), end="")
    return 0


def cmd_coverage(args: argparse.Namespace) -> int:
    """Print every runbook step with whether CI executes it, then the totals."""
    from dataclasses import asdict

    from v4runtime.runbooks.coverage import coverage_entries, summary

    entries = coverage_entries(args.root)
    for entry in entries:
        if args.json:
            print(json.dumps(asdict(entry)))
        else:
            state = "executed" if entry.executed else f"NOT executed ({entry.exempt or 'no e2e test'})"
            print(f"{entry.file}  {entry.step:<20} {state}  [{', '.join(entry.commands)}]")
    if not args.json:
        counts = summary(entries)
        print(
            f"{counts['runbooks']} runbooks, {counts['steps']} steps: {counts['executed']} executed by CI "
            f"({counts['commands_executed']} commands), {counts['exempt']} exempt"
        )
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema runbooks are validated against."""
    from v4runtime.runbooks.schema import schema

    print(json.dumps(schema(), indent=2))
    return 0
