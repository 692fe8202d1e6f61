"""The runbook runner: steps in order, verification, retries, confirmation, rollback, audit log.

Semantics (also in docs/reference/runbooks.md):

- A step runs its ``run`` command; it passes when the verification passes (``verify``: a
  command, or checks on the step's own exit status/output; ``expect`` is a regex).
- A failed attempt is retried ``retries`` times. When a step finally fails, times out, is
  declined at its ``confirm`` gate, or the run is interrupted (Ctrl-C / SIGTERM / SIGHUP), the run
  stops and rolls back: the stopped step's own ``rollback`` first (it may have partly applied;
  not for a declined step, which never ran), then the rollbacks of the completed steps in
  reverse order. Rollbacks must therefore be idempotent.
- A command that cannot be started at all (its working directory is gone, no ``bash``, the
  command too long for the kernel, no process or file descriptor left) is a failed command with
  no exit status, the OS error as its reason: a step fails (after its retries), a verify poll
  fails, a rollback fails and the others still run. Before each rollback a working directory
  that a step removed is recreated, empty (event ``cwd_recreated``), so rollbacks still start.
- Every event is appended to the audit log with digests of the (masked) command and output. A
  log that cannot be written at the start refuses the run; one that fails later does not stop it
  (nor skip a rollback): the events are printed on stderr and the exit status says so.
- One live run of a runbook at a time: a second one is refused (:class:`~v4runtime.runbooks.lock.RunbookLocked`,
  exit status ``EXIT_LOCKED``), and so is a run while a step of a runner that died still runs; a
  dry run takes no lock.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from v4runtime.errors import RunbookError
from v4runtime.runbooks.audit import AuditLog, default_path, sha256
from v4runtime.runbooks.execute import MAX_OUTPUT, Completed, Interrupted, run_command
from v4runtime.runbooks.lock import RunLock, hold, lock_path
from v4runtime.runbooks.model import ParamValue, Runbook, Step
from v4runtime.runbooks.params import ResolvedParams, mask, resolve, substitute
from v4runtime.runbooks.progress import Progress

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
#: Another run of the same runbook is in progress (sysexits' EX_TEMPFAIL: try again later).
EXIT_LOCKED = 75
#: The run succeeded but its audit log could not be fully written (sysexits' EX_IOERR).
EXIT_LOG_FAILED = 74


@dataclass
class RunOptions:
    """How to run a runbook (the CLI options of ``runbook run``)."""

    params: Mapping[str, ParamValue] = field(default_factory=dict)
    dry_run: bool = False
    from_step: str | None = None
    only: Sequence[str] = ()
    yes: bool = False
    ci: bool = False
    log_path: Path | None = None
    cwd: Path | None = None
    interactive: bool | None = None
    keep_run_dir: bool = False
    rehearse_rollback: bool = False


@dataclass
class StepOutcome:
    """What happened to one step."""

    step: str
    status: str  # passed | failed | timeout | interrupted | declined | skipped
    exit_code: int | None = None
    duration: float = 0.0
    verify: str = "not_run"  # passed | failed | not_run | interrupted
    attempts: int = 0
    output: str = ""
    #: Why a command of the step (its ``run`` or its verify command) could not be started.
    error: str | None = None


@dataclass
class RunResult:
    """Outcome of a run; ``exit_code`` is what the CLI returns."""

    run_id: str
    runbook: str
    status: str  # succeeded | failed | interrupted | dry_run | rehearsed
    steps: list[StepOutcome] = field(default_factory=list)
    failed_step: str | None = None
    #: (step, exit status) of each rollback that ran; ``None`` when it could not be started.
    rollbacks: list[tuple[str, int | None]] = field(default_factory=list)
    log_path: Path | None = None
    #: Why the audit log could not be written, and how many events it lacks (printed on stderr instead).
    log_error: str | None = None
    log_lost: int = 0

    @property
    def exit_code(self) -> int:
        """0 on success, dry run or a clean rollback drill; 130 when interrupted; 1 otherwise.

        A run that would exit 0 exits ``EXIT_LOG_FAILED`` when its audit log is incomplete.
        """
        if any(code != 0 for _, code in self.rollbacks):
            return EXIT_FAILED if self.status != "interrupted" else EXIT_INTERRUPTED
        code = {"succeeded": EXIT_OK, "dry_run": EXIT_OK, "rehearsed": EXIT_OK, "interrupted": EXIT_INTERRUPTED}.get(
            self.status, EXIT_FAILED
        )
        return EXIT_LOG_FAILED if code == EXIT_OK and self.log_error else code


@dataclass
class _Attempt:
    """One attempt at a step: its command, then (when that exited 0) its verify command."""

    completed: Completed
    verify: str = "not_run"  # passed | failed | not_run | interrupted
    verify_done: Completed | None = None
    verify_time: float = 0.0
    interrupted: bool = False

    @property
    def error(self) -> str | None:
        """Why the step's command, or else its verify command, could not be started."""
        if self.completed.error is not None:
            return f"the command could not be started: {self.completed.error}"
        if self.verify_done is not None and self.verify_done.error is not None:
            return f"the verify command could not be started: {self.verify_done.error}"
        return None

    @property
    def status(self) -> str:
        """passed | failed | timeout | interrupted."""
        if self.interrupted:
            return "interrupted"
        if self.verify == "passed":
            return "passed"
        return "timeout" if self.completed.timed_out else "failed"


def new_run_id() -> str:
    """Sortable, unique run id: UTC timestamp plus random hex."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def select_steps(runbook: Runbook, from_step: str | None, only: Sequence[str]) -> list[Step]:
    """The steps a run executes (``--from`` / ``--only``); raises RunbookError on an unknown id."""
    ids = [s.id for s in runbook.steps]
    for wanted in [*([from_step] if from_step else []), *only]:
        if wanted not in ids:
            raise RunbookError(f"runbook {runbook.name!r} has no step {wanted!r} (steps: {', '.join(ids)})")
    if from_step and only:
        raise RunbookError("use either --from or --only, not both")
    if only:
        return [s for s in runbook.steps if s.id in set(only)]
    if from_step:
        return runbook.steps[ids.index(from_step) :]
    return list(runbook.steps)


@contextmanager
def _terminate_as_interrupt(received: list[str]) -> Iterator[None]:
    """Treat SIGTERM and SIGHUP (the terminal or SSH session went away) like Ctrl-C while a run is in progress.

    Without this a hang-up would kill the runner outright: no rollback, no ``run_end``, and the
    step's process group (in its own session, so the hang-up does not reach it) left running.
    The name of each signal is appended to ``received``, for the audit log.
    """

    def handler(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)
        raise KeyboardInterrupt

    try:
        # SIGINT too: a process started in the background by a shell inherits it ignored; take it back.
        previous = [(sig, signal.signal(sig, handler)) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)]
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, handler_before in previous:
            signal.signal(sig, handler_before)


@contextmanager
def _shielded(progress: Progress) -> Iterator[None]:
    """While rollbacks run, a further Ctrl-C/SIGTERM is noted but does not abandon them."""

    def handler(signum: int, frame: object) -> None:
        progress.line("(rollback in progress: finishing rollbacks before exiting)")

    saved = []
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            saved.append((sig, signal.signal(sig, handler)))
    except ValueError:
        pass
    try:
        yield
    finally:
        for sig, previous in saved:
            signal.signal(sig, previous)


class Runner:
    """Runs one runbook with given options; see the module docstring for the semantics."""

    def __init__(
        self,
        runbook: Runbook,
        options: RunOptions,
        progress: Progress | None = None,
        ask: Callable[[str], str] | None = None,
    ) -> None:
        self.runbook = runbook
        self.options = options
        self.progress = progress or Progress()
        self.ask = ask or input
        self.params: ResolvedParams = resolve(runbook, options.params)
        self.steps = select_steps(runbook, options.from_step, options.only)
        self.cwd = options.cwd or Path(runbook.path).resolve().parent.parent
        self.run_id = new_run_id()
        self.secret_values = self.params.secret_values()
        self._signals: list[str] = []  # names of the signals received during the run, in order
        self._lock: RunLock | None = None  # notes the running command's process group (see lock.py)

    # -- helpers -------------------------------------------------------------------------
    def _signal_name(self) -> str:
        """The signal that interrupted the run, for the audit log (SIGINT when none was caught: Ctrl-C)."""
        return self._signals[0] if self._signals else "SIGINT"

    def _interactive(self) -> bool:
        if self.options.interactive is not None:
            return self.options.interactive
        return sys.stdin.isatty()

    def _check_gates(self) -> None:
        """Refuse before anything runs when a gate cannot be answered."""
        if self.options.yes or self.options.dry_run or self._interactive():
            return
        gated = [s.id for s in self.steps if s.confirm and not self._exempted(s)]
        if gated:
            raise RunbookError(
                f"runbook {self.runbook.name!r} step {gated[0]!r} needs confirmation and stdin is not a "
                "terminal; nothing was run. Pass --yes to confirm every gate non-interactively."
            )

    def _exempted(self, step: Step) -> str | None:
        if not self.options.ci:
            return None
        return step.ci_exempt or self.runbook.ci_exempt

    def _env(self, run_dir: str) -> dict[str, str]:
        env = dict(os.environ)
        bin_dir = str(Path(sys.executable).parent)  # same install's v4runtime, pytest, mkdocs, ruff
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        env.update(self.params.env())
        env.update({"RUNBOOK_RUN_ID": self.run_id, "RUNBOOK_RUN_DIR": run_dir, "PYTHONUNBUFFERED": "1"})
        return env

    def _masked(self, text: str) -> str:
        return mask(text, self.secret_values)

    def command(self, text: str, run_dir: str) -> str:
        """``text`` with parameters substituted (secrets as environment references)."""
        return substitute(text, self.params, {"run_dir": run_dir})

    # -- dry run -------------------------------------------------------------------------
    def dry_run(self) -> RunResult:
        """Print every command with parameters substituted; run nothing, log nothing."""
        out = self.progress.line
        run_dir = os.path.join(tempfile.gettempdir(), f"runbook-{self.runbook.name}-{self.run_id}")
        out(f"dry run of runbook {self.runbook.name!r} ({len(self.steps)} step(s)); nothing is executed")
        for key, value in self.params.masked().items():
            out(f"  param {key} = {value}")
        result = RunResult(self.run_id, self.runbook.name, "dry_run")
        for index, step in enumerate(self.steps, 1):
            out(f"[{index}/{len(self.steps)}] {step.id}")
            if step.confirm:
                out(f"    confirm: {step.confirm}")
            if reason := self._exempted(step):
                out(f"    skipped in CI: {reason}")
            for line in self.command(step.run, run_dir).splitlines():
                out(f"    run:      {line}")
            verify = step.verify
            if verify.run:
                for line in self.command(verify.run, run_dir).splitlines():
                    out(f"    verify:   {line}")
            checks = [f"exit status {verify.exit_code}"] + ([f"output matches /{verify.expect}/"] if verify.expect else [])
            out(f"    expect:   {' and '.join(checks)}")
            if step.rollback:
                for line in self.command(step.rollback, run_dir).splitlines():
                    out(f"    rollback: {line}")
            result.steps.append(StepOutcome(step.id, "skipped"))
        return result

    # -- live run ------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Execute the run (or the dry run) and return its result; never raises for a failed step.

        Raises:
            RunbookLocked: another live run of this runbook (same audit log directory) is in progress.
            RunbookError: a gate cannot be answered, or the audit log cannot be written.
        """
        self._check_gates()
        if self.options.dry_run:  # runs and writes nothing, so it needs no lock
            return self.dry_run()
        log_path = self.options.log_path or default_path()
        with hold(lock_path(log_path, self.runbook.name), self.runbook.name, self.run_id) as lock:
            self._lock = lock
            try:
                return self._live(log_path)
            finally:
                self._lock = None

    def _live(self, log_path: Path) -> RunResult:
        """The live run, under the runbook's lock."""
        log = AuditLog(log_path, self.run_id, self.runbook.name)
        started = time.monotonic()
        log.start(  # raises when the log cannot be written: nothing has run, nothing is left behind
            params=self.params.masked(),
            steps=[s.id for s in self.steps],
            cwd=str(self.cwd),
            mode="ci" if self.options.ci else "live",
        )
        try:
            run_dir = tempfile.mkdtemp(prefix=f"runbook-{self.runbook.name}-{self.run_id}-")
        except OSError as exc:  # a full or read-only temp folder: nothing has run, so nothing to roll back
            reason = f"cannot create the run directory in {tempfile.gettempdir()}: {exc.strerror or exc}"
            log.event("run_end", status="failed", failed_step=None, duration_s=round(time.monotonic() - started, 3),
                      rollbacks=[], reason=reason)
            raise RunbookError(f"{reason}; nothing was run (set TMPDIR to a writable folder)") from None
        env = self._env(run_dir)
        result = RunResult(self.run_id, self.runbook.name, "failed", log_path=log_path)
        self.progress.line(
            f"runbook {self.runbook.name!r}: {len(self.steps)} step(s), run {self.run_id}, log {log_path}"
        )
        done: list[Step] = []
        stopped: Step | None = None
        current: Step | None = None
        try:
            try:
                with _terminate_as_interrupt(self._signals):
                    stopped = self._loop(result, env, run_dir, log, done)
            except KeyboardInterrupt:  # between commands (e.g. at a confirmation prompt)
                current = self.steps[len(result.steps)] if len(result.steps) < len(self.steps) else None
                step_id = current.id if current else None
                log.event("interrupted", step=step_id, signal=self._signal_name())
                self.progress.line(f"interrupted before step {step_id!r} completed")
                result.status, result.failed_step, stopped = "interrupted", step_id, current
            if result.status == "succeeded" and self.options.rehearse_rollback:
                log.event("rehearsal", steps=[s.id for s in done if s.rollback])
                self.progress.line("rollback drill (--rehearse-rollback): every step passed; rolling back now")
                result.status = "rehearsed"
            if result.status != "succeeded":
                with _shielded(self.progress):
                    self._rollback(([stopped] if stopped else []) + done[::-1], run_dir, env, log, result)
        finally:
            log.event(
                "run_end",
                status=result.status,
                failed_step=result.failed_step,
                duration_s=round(time.monotonic() - started, 3),
                rollbacks=[{"step": s, "exit_code": c} for s, c in result.rollbacks],
            )
            result.log_error, result.log_lost = log.error, log.lost
            if self.options.keep_run_dir:
                self.progress.line(f"run directory kept: {run_dir}")
            else:
                shutil.rmtree(run_dir, ignore_errors=True)
        self._summary(result)
        return result

    def _loop(self, result: RunResult, env: dict[str, str], run_dir: str, log: AuditLog, done: list[Step]) -> Step | None:
        """Run the selected steps in order; returns the step to roll back first when one stops the run."""
        for index, step in enumerate(self.steps, 1):
            label = f"[{index}/{len(self.steps)}] {step.id}"
            if reason := self._exempted(step):
                log.event("step_skipped", step=step.id, reason=reason)
                self.progress.line(f"{label} skipped in CI: {reason}")
                result.steps.append(StepOutcome(step.id, "skipped"))
                continue
            outcome = self._run_step(step, label, run_dir, env, log)
            result.steps.append(outcome)
            if outcome.status != "passed":
                result.failed_step = step.id
                result.status = "interrupted" if outcome.status == "interrupted" else "failed"
                return step if outcome.status != "declined" else None
            done.append(step)
        result.status = "succeeded"
        return None

    def _summary(self, result: RunResult) -> None:
        failed_rollbacks = [s for s, c in result.rollbacks if c != 0]
        if result.status == "succeeded":
            self.progress.line(f"runbook {self.runbook.name!r} succeeded (run {self.run_id})")
            return
        if result.status == "rehearsed":
            self.progress.line(
                f"runbook {self.runbook.name!r} rollback drill done: {len(result.rollbacks)} rollback(s) ran"
                f"{', FAILED for: ' + ', '.join(failed_rollbacks) if failed_rollbacks else ', all passed'}"
                f" (run {self.run_id})"
            )
            return
        what = "interrupted at" if result.status == "interrupted" else "FAILED at"
        note = f"; rollback FAILED for: {', '.join(failed_rollbacks)}" if failed_rollbacks else ""
        rolled = f"; rolled back {len(result.rollbacks)} step(s)" if result.rollbacks else ""
        self.progress.line(
            f"runbook {self.runbook.name!r} {what} step {result.failed_step!r} (run {self.run_id}){rolled}{note}"
        )

    def _confirm(self, step: Step, log: AuditLog) -> bool:
        if self.options.yes:
            log.event("confirm", step=step.id, question=step.confirm, answer="yes (--yes)")
            return True
        try:
            answer = self.ask(f"{step.confirm} [y/N] ").strip().lower()
        except EOFError:
            answer = ""
        accepted = answer in {"y", "yes"}
        log.event("confirm", step=step.id, question=step.confirm, answer="yes" if accepted else "no")
        return accepted

    def _check(self, completed: Completed, exit_code: int, expect: str | None) -> bool:
        if completed.timed_out or completed.exit_code != exit_code:
            return False
        return expect is None or re.search(expect, completed.output, re.MULTILINE) is not None

    def _run_step(self, step: Step, label: str, run_dir: str, env: dict[str, str], log: AuditLog) -> StepOutcome:
        if step.confirm and not self._confirm(step, log):
            self.progress.line(f"{label} declined at the confirmation gate")
            return StepOutcome(step.id, "declined")
        command = self.command(step.run, run_dir)
        verify_command = self.command(step.verify.run, run_dir) if step.verify.run else None
        outcome = StepOutcome(step.id, "failed")
        for attempt in range(1, step.retries + 2):
            suffix = f" (attempt {attempt}/{step.retries + 1})" if step.retries else ""
            self.progress.begin(label + suffix, command)
            tried = self._attempt(step, command, verify_command, env)
            completed, verify_done = tried.completed, tried.verify_done
            output = self._masked(completed.output + (verify_done.output if verify_done else ""))
            total, omitted = _sizes(completed, verify_done)
            error = self._masked(tried.error) if tried.error else None
            log.event(
                "step",
                step=step.id,
                attempt=attempt,
                command_sha256=sha256(command),
                exit_code=completed.exit_code,
                duration_s=round(completed.duration, 3),
                verify=tried.verify,
                verify_exit_code=verify_done.exit_code if verify_done else None,
                verify_duration_s=round(tried.verify_time, 3) if verify_done else None,
                output_sha256=sha256(output),
                output_bytes=total,
                output_omitted_bytes=omitted,
                status=tried.status,
                **({"reason": error} if error else {}),
            )
            outcome = StepOutcome(
                step.id, tried.status, completed.exit_code, completed.duration, tried.verify, attempt, output, error
            )
            self.progress.end(self._describe(outcome, step, tried.verify_time if verify_done else None))
            self._report_truncation(total, omitted)
            if outcome.status in {"passed", "interrupted"}:
                if outcome.status == "interrupted":
                    log.event("interrupted", step=step.id, signal=self._signal_name())
                return outcome
            self.progress.output(output)
        return outcome

    def _attempt(self, step: Step, command: str, verify_command: str | None, env: dict[str, str]) -> _Attempt:
        """Run the step's command, then verify it; an interrupt at any point is an interrupted attempt."""
        try:
            completed = self._execute(step, "run", command, env, tick=self.progress.tick)
        except Interrupted as exc:
            return _Attempt(exc.completed, interrupted=True)
        if completed.error is not None:  # nothing ran: nothing to verify
            return _Attempt(completed)
        if verify_command is None:
            ok = self._check(completed, step.verify.exit_code, step.verify.expect)
            return _Attempt(completed, "passed" if ok else "failed")
        if completed.exit_code != 0 or completed.timed_out:
            return _Attempt(completed)
        verify_start = time.monotonic()
        try:
            ok, verify_done = self._verify(step, verify_command, env)
        except Interrupted as exc:  # during a verify command or between two polls: the step's result stands
            return _Attempt(completed, "interrupted", exc.completed, time.monotonic() - verify_start, interrupted=True)
        return _Attempt(completed, "passed" if ok else "failed", verify_done, time.monotonic() - verify_start)

    def _verify(self, step: Step, command: str, env: dict[str, str]) -> tuple[bool, Completed]:
        """Run the verify command, polling up to ``attempts`` times (a poll that cannot start fails).

        Raises:
            Interrupted: the run was interrupted, during a poll or between two (with the last poll's result).
        """
        verify = step.verify
        for poll in range(verify.attempts):
            completed = self._execute(step, "verify", command, env)
            if self._check(completed, verify.exit_code, verify.expect):
                return True, completed
            if poll + 1 < verify.attempts:
                try:
                    time.sleep(verify.interval)
                except KeyboardInterrupt:  # our SIGTERM/SIGHUP handler raises it too
                    raise Interrupted(completed) from None
        return False, completed

    def _execute(
        self, step: Step, what: str, command: str, env: dict[str, str], tick: Callable[[float], None] | None = None
    ) -> Completed:
        """``run_command`` for ``what`` (run, verify, rollback) of ``step``, noted in the lock file while it runs.

        The note lets a later run see that this command still runs should the runner die (see lock.py).
        A command that cannot be started comes back with ``exit_code`` ``None`` and ``error`` set.
        """
        lock = self._lock
        started = (lambda pgid: lock.running(step.id, what, pgid)) if lock else None
        try:
            return run_command(command, cwd=self.cwd, env=env, timeout=step.timeout, tick=tick, started=started)
        finally:
            if lock:
                lock.idle()

    def _describe(self, outcome: StepOutcome, step: Step, verify_time: float | None = None) -> str:
        took = f"{outcome.duration:.2f}s"
        if outcome.error and outcome.status == "failed":
            return f"FAILED in {took}: {outcome.error}"
        if outcome.status == "passed":
            return f"passed in {took} (verify passed{f' in {verify_time:.2f}s' if verify_time is not None else ''})"
        if outcome.status == "timeout":
            return f"TIMED OUT after {took} (limit {step.timeout:g}s; process group killed)"
        if outcome.status == "interrupted" and outcome.verify == "interrupted":
            return f"INTERRUPTED during verification (the command exited 0 in {took})"
        if outcome.status == "interrupted":
            return f"INTERRUPTED after {took} (process group killed)"
        if outcome.verify == "failed" and step.verify.run:
            return f"FAILED in {took}: verify command did not pass ({self._wanted(step)})"
        if outcome.verify == "failed" and outcome.exit_code == step.verify.exit_code:
            return f"FAILED in {took}: output did not match /{step.verify.expect}/"
        return f"FAILED in {took}: exit status {outcome.exit_code} (wanted {step.verify.exit_code if not step.verify.run else 0})"

    def _report_truncation(self, total: int, omitted: int) -> None:
        """Say so when a command printed more than is kept (the audit log records the same numbers)."""
        if omitted:
            self.progress.line(
                f"    output truncated: {total} bytes printed, {omitted} omitted "
                f"(only the first and last {MAX_OUTPUT // 2 >> 20} MiB are kept)"
            )

    @staticmethod
    def _wanted(step: Step) -> str:
        want = f"wanted exit status {step.verify.exit_code}"
        return want + (f" and output matching /{step.verify.expect}/" if step.verify.expect else "")

    def _rollback(self, steps: list[Step], run_dir: str, env: dict[str, str], log: AuditLog, result: RunResult) -> None:
        steps = [s for s in steps if s.rollback]
        if not steps:
            self.progress.line("no rollback to run")
            return
        self.progress.line(f"rolling back {len(steps)} step(s) in reverse order")
        for step in steps:
            command = self.command(step.rollback or "", run_dir)
            self._restore_cwd(step, log)
            self.progress.begin(f"rollback {step.id}", command)
            try:
                completed = self._execute(step, "rollback", command, env, tick=self.progress.tick)
            except Interrupted as exc:  # only when signals could not be shielded (not the main thread)
                completed = exc.completed
            output = self._masked(completed.output)
            error = self._masked(completed.error) if completed.error is not None else None
            log.event(
                "rollback",
                step=step.id,
                command_sha256=sha256(command),
                exit_code=completed.exit_code,
                duration_s=round(completed.duration, 3),
                output_sha256=sha256(output),
                output_bytes=completed.output_bytes,
                output_omitted_bytes=completed.omitted,
                status="passed" if completed.exit_code == 0 else "failed",
                **({"reason": f"the rollback command could not be started: {error}"} if error else {}),
            )
            result.rollbacks.append((step.id, completed.exit_code))
            if completed.exit_code == 0:
                self.progress.end(f"done in {completed.duration:.2f}s")
            elif error:
                self.progress.end(f"FAILED: the rollback command could not be started: {error}")
            else:
                self.progress.end(f"FAILED (exit status {completed.exit_code})")
            self._report_truncation(completed.output_bytes, completed.omitted)
            if completed.exit_code != 0:
                self.progress.output(output)

    def _restore_cwd(self, step: Step, log: AuditLog) -> None:
        """Recreate the working directory, empty, when a step removed it, before ``step``'s rollback.

        Without it no rollback could start (bash needs an existing cwd), not even one that only
        touches files elsewhere. Logged as a ``cwd_recreated`` event. When it cannot be recreated
        the rollback fails as a command that cannot be started, as before.
        """
        if self.cwd.is_dir():
            return
        try:
            self.cwd.mkdir(parents=True)
        except OSError as exc:
            self.progress.line(f"cannot recreate the working directory {self.cwd}: {exc.strerror or exc}")
            return
        log.event("cwd_recreated", step=step.id, cwd=str(self.cwd))
        self.progress.line(f"working directory {self.cwd} was gone: recreated it (empty) for the rollbacks")


def _sizes(completed: Completed, verify: Completed | None) -> tuple[int, int]:
    """Bytes printed and bytes omitted by a step's command and its verify command together."""
    extra = (verify.output_bytes, verify.omitted) if verify else (0, 0)
    return completed.output_bytes + extra[0], completed.omitted + extra[1]


def run_runbook(runbook: Runbook, options: RunOptions, progress: Progress | None = None) -> RunResult:
    """Run ``runbook`` with ``options`` (see :class:`Runner`); returns the :class:`RunResult`."""
    return Runner(runbook, options, progress).run()
