"""Run a page's shell blocks like a reader would: one scratch directory, state flowing down.

Each block runs once, in page order, with ``bash -euo pipefail``. The working directory and
exported variables a block leaves behind are restored for the next block (saved by an EXIT
trap), so nothing is ever re-run. Every block starts in its own session (process group);
background processes it leaves running (``server &``) are killed when the page ends.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TIMEOUT_S = 60.0
_EXIT_MARK = re.compile(r"^\[exit (\d+)\]$")


class BlockFailure(Exception):
    """A block failed; ``str()`` is the report (the block, its output or a diff).

    ``line`` is the page line to blame when more precise than the fence's opening line.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass
class ConsoleCommand:
    """One ``$ command`` of a console block with the output the page expects."""

    line: int  # 1-based page line of the ``$`` line
    command: str
    expected: list[str]
    exit_code: int = 0


def parse_console(body: str, first_line: int) -> list[ConsoleCommand]:
    """Split a console block into commands and expected outputs.

    A line starting with ``$ `` is a command (a trailing backslash continues it on the next
    line); the lines up to the next ``$ `` line are its expected output. A last output line
    ``[exit N]`` says the command is expected to exit with status N.

    Raises:
        BlockFailure: text before the first command, or no command at all.
    """
    commands: list[ConsoleCommand] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ ") or line == "$":
            cmd_line = first_line + i
            command = line[2:]
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command += "\n" + lines[i]
            commands.append(ConsoleCommand(cmd_line, command, []))
        elif not commands:
            if line.strip():
                raise BlockFailure(f"console text before the first `$ ` command: {line!r}", line=first_line + i)
        else:
            commands[-1].expected.append(line)
        i += 1
    if not commands:
        raise BlockFailure("console block has no `$ ` command")
    for cmd in commands:
        while cmd.expected and not cmd.expected[-1].strip():
            cmd.expected.pop()
        if cmd.expected and (m := _EXIT_MARK.match(cmd.expected[-1].strip())):
            cmd.exit_code = int(m.group(1))
            cmd.expected.pop()
    return commands


def _normalise(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def output_matches(expected: list[str], actual: str) -> bool:
    """Compare output with ``...`` wildcards.

    ``...`` inside a line matches any text on that line; a line that is only ``...`` matches
    any number of whole lines (including none).
    """
    pattern = []
    for line in _normalise("\n".join(expected)):
        if line.strip() == "...":
            pattern.append(r"(?:[^\n]*\n)*?")
        else:
            pattern.append(".*?".join(re.escape(part) for part in line.split("...")) + r"\n")
    actual_lines = _normalise(actual)
    text = "\n".join(actual_lines) + ("\n" if actual_lines else "")
    return re.fullmatch("".join(pattern), text, ) is not None


def numbered(body: str, first_line: int) -> str:
    """The block's text with page line numbers in the margin."""
    lines = body.rstrip("\n").split("\n")
    width = len(str(first_line + len(lines)))
    return "\n".join(f"{first_line + n:>{width}} | {text}" for n, text in enumerate(lines))


@dataclass
class PageSession:
    """The scratch directory and processes of one page while its blocks run."""

    page: str  # display path, e.g. docs/testing.md
    repo: Path
    scratch: Path = field(init=False)
    _state: Path = field(init=False)
    _groups: list[int] = field(default_factory=list, init=False)
    _count: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.page).strip("-")
        base = Path(tempfile.mkdtemp(prefix=f"v4docs-{slug}-"))
        self.scratch = base / "work"
        self.scratch.mkdir()
        self._state = base / "state"
        self._state.mkdir()
        (self._state / "cwd").write_text(str(self.scratch))

    def env(self) -> dict[str, str]:
        """The environment blocks start from: the repo's virtualenv first on PATH, V4_REPO set."""
        env = dict(os.environ)
        venv_bin = self.repo / ".venv" / "bin"
        bins = [str(venv_bin)] if venv_bin.is_dir() else []
        bins.append(str(Path(sys.executable).parent))
        env["PATH"] = os.pathsep.join([*dict.fromkeys(bins), env.get("PATH", "")])
        env["V4_REPO"] = str(self.repo)
        env["PYTHONUNBUFFERED"] = "1"
        env["NO_MKDOCS_2_WARNING"] = "1"
        env.pop("PYTEST_CURRENT_TEST", None)
        return env

    def run_shell(self, script: str, timeout: float = DEFAULT_TIMEOUT_S) -> tuple[int, str]:
        """Run one script with ``bash -euo pipefail``; returns (exit status, stdout+stderr)."""
        self._count += 1
        n = self._count
        state = self._state
        wrapper = state / f"block{n}.sh"
        wrapper.write_text(
            "set +eu\n"
            f'[ -f "{state}/env" ] && source "{state}/env" >/dev/null 2>&1\n'
            f'cd "$(cat "{state}/cwd")"\n'
            f"trap '__v4rc=$?; export -p > \"{state}/env\"; pwd > \"{state}/cwd\"; exit $__v4rc' EXIT\n"
            "set -euo pipefail\n" + script + "\n"
        )
        out_path = state / f"block{n}.out"
        # Output goes to a file, not a pipe: a background process keeps a pipe open forever.
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                ["bash", "-euo", "pipefail", str(wrapper)],
                cwd=self.scratch,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._groups.append(proc.pid)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
                output = out_path.read_text(errors="replace")
                raise BlockFailure(f"timed out after {timeout:g}s\n--- output so far ---\n{output}") from None
        return rc, out_path.read_text(errors="replace")

    def run_bash_block(self, body: str, first_line: int, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Run a bash block; raise BlockFailure (with the block and its output) on a non-zero exit."""
        rc, output = self.run_shell(body, timeout)
        if rc != 0:
            raise BlockFailure(
                f"bash block exited with status {rc}\n--- block ---\n{numbered(body, first_line)}\n"
                f"--- output ---\n{output.rstrip()}"
            )

    def run_console_block(self, body: str, first_line: int, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Run each ``$`` command of a console block and compare its output with the page."""
        for cmd in parse_console(body, first_line):
            rc, output = self.run_shell(cmd.command, timeout)
            problems = []
            if rc != cmd.exit_code:
                problems.append(f"exit status {rc}, expected {cmd.exit_code}")
            if not output_matches(cmd.expected, output):
                diff = difflib.unified_diff(
                    _normalise("\n".join(cmd.expected)),
                    _normalise(output),
                    "expected (page)",
                    "actual",
                    lineterm="",
                )
                problems.append("output differs (`...` is a wildcard):\n" + "\n".join(diff))
            if problems:
                raise BlockFailure(
                    f"`$ {cmd.command}`: "
                    + "; ".join(problems)
                    + f"\n--- block ---\n{numbered(body, first_line)}\n--- actual output ---\n{output.rstrip()}",
                    line=cmd.line,
                )

    def run_python_block(self, body: str, first_line: int, filename: str) -> None:
        """Run a Python block in-process with cwd = the scratch dir (tracebacks show page lines)."""
        code = compile("\n" * (first_line - 1) + body, filename, "exec", dont_inherit=True)
        with self.python_context():
            exec(code, {"__name__": "__main__"})

    @contextlib.contextmanager
    def python_context(self) -> Iterator[None]:
        """cwd = the scratch dir, and the blocks' PATH and V4_REPO, for in-process Python."""
        old_cwd, old_env = os.getcwd(), dict(os.environ)
        env = self.env()
        os.chdir(self.scratch)
        os.environ.update({key: env[key] for key in ("PATH", "V4_REPO")})
        try:
            yield
        finally:
            os.chdir(old_cwd)
            os.environ.clear()
            os.environ.update(old_env)

    def close(self) -> None:
        """Kill every process the page's blocks left running and remove the scratch directory."""
        for pgid in self._groups:
            _kill_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        for pgid in self._groups:
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _group_alive(pgid):
                _kill_group(pgid, signal.SIGKILL)
        self._groups.clear()
        shutil.rmtree(self.scratch.parent, ignore_errors=True)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """True while a non-zombie process is left in the group (zombies cannot be killed anyway)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces, so split after the last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False
