"""The runner when things around it break: the audit log, a killed runner, a signal mid-verify, bad options."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from v4runtime.runbooks.audit import read

from .helpers import REPO, alive, cli, events, start_cli, write_runbook

FILL_LOG = """
title: Full
purpose: The audit log's disk fills up while a step runs.
params:
  dir:
    description: state directory
  log:
    description: the audit log, which the second step turns into /dev/full
steps:
  - id: deploy
    description: changes something, and can undo it
    run: echo deploy >> {{ dir }}/order
    verify: {exit_code: 0}
    rollback: echo undo-deploy >> {{ dir }}/order
  - id: migrate
    description: every write to the log fails from now on
    run: rm -f {{ log }}; ln -s /dev/full {{ log }}; exit STATUS
    verify: {exit_code: 0}
"""

OK = """
title: OK
purpose: Passes.
steps:
  - id: a
    description: says hi
    run: echo hi
    verify: {expect: hi}
"""


def _wait_for(path: Path, timeout: float = 60) -> None:
    """Until ``path`` exists and is not empty (the machine may be loaded: a generous limit)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"


def _stderr_events(stderr: str) -> list[dict]:
    """The events the runner could not write, printed on stderr as JSON lines."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_log_write_failure_mid_run_still_rolls_back_and_loses_no_event(tmp_path: Path) -> None:
    write_runbook(tmp_path, "full", FILL_LOG.replace("STATUS", "3"))
    log = tmp_path / "audit.jsonl"
    result = cli(["run", "full", "-p", f"dir={tmp_path}", "-p", f"log={log}"], cwd=tmp_path, log=log)
    assert result.returncode == 1, result.stdout + result.stderr  # the step failed: that still decides
    assert (tmp_path / "order").read_text().split() == ["deploy", "undo-deploy"]
    assert f"error: cannot write audit log {log}: No space left on device" in result.stderr
    lost = _stderr_events(result.stderr)
    assert [(e["event"], e.get("step")) for e in lost] == [("step", "migrate"), ("rollback", "deploy"), ("run_end", None)]
    assert lost[-1]["status"] == "failed" and lost[-1]["rollbacks"] == [{"step": "deploy", "exit_code": 0}]
    assert "the audit log lacks 3 event(s)" in result.stderr
    assert "failed at step 'migrate'" in result.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_successful_run_with_an_incomplete_log_exits_74(tmp_path: Path) -> None:
    write_runbook(tmp_path, "full", FILL_LOG.replace("STATUS", "0"))
    log = tmp_path / "audit.jsonl"
    result = cli(["run", "full", "-p", f"dir={tmp_path}", "-p", f"log={log}"], cwd=tmp_path, log=log)
    assert result.returncode == 74, result.stdout + result.stderr
    assert "succeeded" in result.stdout
    assert [e["event"] for e in _stderr_events(result.stderr)] == ["step", "run_end"]


def test_log_cut_off_mid_line_is_repaired_and_read_around(tmp_path: Path) -> None:
    write_runbook(tmp_path, "ok", OK)
    log = tmp_path / "audit.jsonl"
    assert cli(["run", "ok"], cwd=tmp_path, log=log).returncode == 0
    log.write_bytes(log.read_bytes()[:-40])  # the first run died while writing its run_end
    second = cli(["run", "ok"], cwd=tmp_path, log=log)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stderr.count("ended in an incomplete line") == 1
    lines = log.read_text().splitlines()
    assert len(lines) == 6 and not lines[2].endswith("}")  # the cut line stands alone
    run_id = json.loads(lines[3])["run_id"]
    assert [json.loads(line)["event"] for line in lines[3:]] == ["run_start", "step", "run_end"]
    shown = cli(["log"], cwd=tmp_path, log=log)
    assert shown.returncode == 0, shown.stderr
    assert f"warning: {log}:3: not a JSON object" in shown.stderr
    assert [line.split()[3] for line in shown.stdout.splitlines()] == ["run_start", "step", "run_start", "step", "run_end"]
    one = cli(["log", "--run", run_id], cwd=tmp_path, log=log)
    assert one.returncode == 0 and len(one.stdout.splitlines()) == 3
    templates = REPO / "runbooks"
    record = cli(["record", "post-rollback", "--dir", str(templates), "--run", run_id], cwd=tmp_path, log=log)
    assert record.returncode == 0, record.stderr
    assert f"Runbook `ok`, run `{run_id}`" in record.stdout


def test_event_glued_onto_a_cut_off_line_is_recovered(tmp_path: Path) -> None:
    whole = json.dumps({"when": "2030-01-01T00:00:00.000+00:00", "run_id": "r2", "event": "run_start", "params": {}})
    log = tmp_path / "audit.jsonl"
    log.write_text('{"when": "2030", "run_id": "r1"\n' + '{"when": "2029-12-31T23:59", "run_id": "r1", "ev' + whole + "\n")
    warnings: list[str] = []
    assert [e["run_id"] for e in read(log, warn=warnings.append)] == ["r2"]
    assert [w.split(": ", 1)[0] for w in warnings] == [f"{log}:1", f"{log}:2"]
    assert "not a JSON object" in warnings[0] and "cut off mid-write" in warnings[1]


def test_server_left_running_by_a_passed_step_does_not_hold_the_lock(tmp_path: Path) -> None:
    write_runbook(
        tmp_path,
        "serve",
        """
        title: Serve
        purpose: Leaves a server running on purpose.
        params:
          dir:
            description: state directory
        steps:
          - id: start
            description: starts a background "server" in its process group, and passes
            run: |
              sleep 300 > /dev/null 2>&1 &
              echo $! >> {{ dir }}/servers
            verify: {exit_code: 0}
        """,
    )
    log, servers = tmp_path / "audit.jsonl", tmp_path / "servers"
    try:
        first = cli(["run", "serve", "-p", f"dir={tmp_path}"], cwd=tmp_path, log=log)
        assert first.returncode == 0, first.stdout + first.stderr
        assert alive(int(servers.read_text()))
        second = cli(["run", "serve", "-p", f"dir={tmp_path}"], cwd=tmp_path, log=log)
        assert second.returncode == 0, second.stdout + second.stderr  # the server is not a step still running
    finally:
        for pid in servers.read_text().split() if servers.exists() else []:
            if alive(int(pid)):
                os.kill(int(pid), signal.SIGKILL)


def test_sigterm_between_verify_polls_logs_the_step_as_interrupted(tmp_path: Path) -> None:
    write_runbook(
        tmp_path,
        "polls",
        """
        title: Polls
        purpose: Verification polls slowly and never passes.
        params:
          dir:
            description: state directory
        steps:
          - id: wait-ready
            description: passes, then is verified every 2 seconds
            run: echo started
            verify:
              run: echo poll >> {{ dir }}/polls; exit 1
              attempts: 30
              interval: 2
            rollback: echo undo >> {{ dir }}/order
        """,
    )
    log = tmp_path / "audit.jsonl"
    proc = start_cli(["run", "polls", "-p", f"dir={tmp_path}"], tmp_path, log)
    _wait_for(tmp_path / "polls")
    time.sleep(0.5)  # the poll took milliseconds: the runner now sleeps until the next one
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "INTERRUPTED during verification" in stdout
    assert (tmp_path / "order").read_text().split() == ["undo"]
    rows = events(log)
    assert [(e["event"], e.get("step")) for e in rows] == [
        ("run_start", None),
        ("step", "wait-ready"),
        ("interrupted", "wait-ready"),
        ("rollback", "wait-ready"),
        ("run_end", None),
    ]
    step = rows[1]
    assert (step["status"], step["exit_code"], step["verify"], step["verify_exit_code"]) == ("interrupted", 0, "interrupted", 1)
    assert rows[2]["signal"] == "SIGTERM"


def test_unwritable_log_refuses_the_run_and_leaves_no_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_runbook(tmp_path, "ok", OK)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # where the runner would create its run directory
    (tmp_path / "logdir").mkdir()
    result = cli(["run", "ok", "--log", str(tmp_path / "logdir")], cwd=tmp_path)
    assert result.returncode == 2
    assert f"error: cannot write audit log {tmp_path / 'logdir'}: Is a directory" in result.stderr
    assert "[1/1]" not in result.stdout  # nothing ran
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("count", ["-2", "0", "two"])
def test_log_last_needs_a_positive_count(tmp_path: Path, count: str) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text(json.dumps({"when": "t", "run_id": "r", "event": "run_start"}) + "\n")
    result = cli(["log", "--last", count], cwd=tmp_path, log=log)
    assert result.returncode == 2 and result.stdout == ""
    assert "argument --last:" in result.stderr


# A step that breaks what every later command needs to start: the rest of the run cannot launch anything.
BREAKS_LAUNCH = """
title: Breaks launch
purpose: The second step removes what the runner needs to start a command.
params:
  dir:
    description: state directory (outside what the second step removes)
steps:
  - id: one
    description: changes something, and can undo it
    run: echo one >> {{ dir }}/order
    verify: {exit_code: 0}
    rollback: echo undo-one >> {{ dir }}/order
  - id: two
    description: passes, but leaves nothing to start the next command with
    run: BREAK
    verify: {exit_code: 0}
    rollback: echo undo-two >> {{ dir }}/order
  - id: three
    description: cannot be started, not even on its retry
    run: echo three >> {{ dir }}/order
    verify: {exit_code: 0}
    retries: 1
    rollback: echo undo-three >> {{ dir }}/order
"""


def _run_unstartable(
    tmp_path: Path, work: Path, breaker: str, env: dict[str, str], text: str = BREAKS_LAUNCH
) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run ``text`` (BREAKS_LAUNCH) from ``work`` (its runbook and the runner's working directory) with step two ``breaker``."""
    write_runbook(work, "breaks", text.replace("BREAK", breaker))
    log = tmp_path / "audit.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "v4runtime.runbooks", "run", "breaks", "-p", f"dir={tmp_path}"],
        cwd=work,
        env={**env, "V4_RUNBOOK_LOG": str(log), "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, events(log)


def _clean_env(scratch: Path) -> dict[str, str]:
    """The test's environment, with ``scratch`` as TMPDIR (where the runner creates its run directory)."""
    env = {**os.environ, "TMPDIR": str(scratch)}
    env.pop("V4_RUNBOOK_DIR", None)
    return env


def test_command_that_cannot_be_started_fails_the_step_and_every_rollback_is_tried(tmp_path: Path) -> None:
    work, scratch = tmp_path / "checkout", tmp_path / "tmp"
    scratch.mkdir()
    env = _clean_env(scratch)
    # The only bash on PATH is a link that step two removes (the runner puts its own bin/ first: no bash there).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bash").symlink_to(shutil.which("bash") or "/bin/bash")
    breaker, why = f"/bin/rm {bin_dir / 'bash'}", "bash: No such file or directory (ENOENT)"
    env["PATH"] = str(bin_dir)
    result, rows = _run_unstartable(tmp_path, work, breaker, env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "FAILED in " in result.stdout and f"the command could not be started: {why}" in result.stdout
    assert "rollback FAILED for: three, two, one" in result.stdout
    assert "error: runbook 'breaks' failed at step 'three'" in result.stderr
    assert (tmp_path / "order").read_text().split() == ["one"]  # no rollback could start either
    assert [(e["event"], e.get("step")) for e in rows] == [
        ("run_start", None),
        ("step", "one"),
        ("step", "two"),
        ("step", "three"),  # attempt 1
        ("step", "three"),  # its retry
        ("rollback", "three"),  # the stopped step's own rollback first
        ("rollback", "two"),
        ("rollback", "one"),
    ] + [("run_end", None)]
    for step in rows[3:5]:
        assert (step["status"], step["exit_code"], step["verify"]) == ("failed", None, "not_run")
        assert step["reason"] == f"the command could not be started: {why}"
    for rollback in rows[5:8]:
        assert (rollback["status"], rollback["exit_code"]) == ("failed", None)
        assert rollback["reason"] == f"the rollback command could not be started: {why}"
    end = rows[-1]
    assert (end["status"], end["failed_step"]) == ("failed", "three")
    assert end["rollbacks"] == [{"step": s, "exit_code": None} for s in ("three", "two", "one")]
    assert list(scratch.iterdir()) == []  # the run directory is still removed


def test_rollbacks_run_in_a_recreated_working_directory_after_a_step_removed_it(tmp_path: Path) -> None:
    work, scratch = tmp_path / "checkout", tmp_path / "tmp"
    scratch.mkdir()
    # Rollback two writes into its working directory, and runs the CLI installed beside the runner.
    text = BREAKS_LAUNCH.replace(
        "rollback: echo undo-two >> {{ dir }}/order", "rollback: v4runtime --version > here && echo undo-two >> {{ dir }}/order"
    )
    result, rows = _run_unstartable(tmp_path, work, 'rm -rf "$PWD"', _clean_env(scratch), text)
    why = f"working directory {work}: No such file or directory (ENOENT)"
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "[3/3] three (attempt 2/2) FAILED in " in result.stdout
    assert f"the command could not be started: {why}" in result.stdout
    assert f"working directory {work} was gone: recreated it (empty) for the rollbacks" in result.stdout
    assert "rollback FAILED" not in result.stdout
    assert (tmp_path / "order").read_text().split() == ["one", "undo-three", "undo-two", "undo-one"]
    assert sorted(p.name for p in work.iterdir()) == ["here"]  # recreated empty; only what rollback two wrote
    assert (work / "here").read_text().startswith("v4runtime ")
    assert [(e["event"], e.get("step")) for e in rows] == [
        ("run_start", None),
        ("step", "one"),
        ("step", "two"),
        ("step", "three"),  # steps are not helped: attempt 1 and its retry cannot be started
        ("step", "three"),
        ("cwd_recreated", "three"),  # once, before the first rollback
        ("rollback", "three"),
        ("rollback", "two"),
        ("rollback", "one"),
        ("run_end", None),
    ]
    assert rows[5]["cwd"] == str(work)
    assert all(r["status"] == "passed" and "reason" not in r for r in rows[6:9])
    assert rows[-1]["rollbacks"] == [{"step": s, "exit_code": 0} for s in ("three", "two", "one")]
    shown = cli(["log", "--run", rows[0]["run_id"]], cwd=tmp_path, log=tmp_path / "audit.jsonl")
    assert f"cwd_recreated  three  cwd={work}" in shown.stdout
    assert list(scratch.iterdir()) == []  # the run directory is still removed


# Makes a command longer than Linux takes for one argument (MAX_ARG_STRLEN, 32 pages): bash cannot be started (E2BIG).
TOO_LONG = "; true " + "x" * (32 * os.sysconf("SC_PAGE_SIZE") + 1000)

TOO_LONG_STEP = """
title: Too long
purpose: One command of the second step is too long to be started; the others start.
params:
  dir:
    description: state directory
steps:
  - id: one
    description: changes something, and can undo it
    run: echo one >> {{ dir }}/order
    verify: {exit_code: 0}
    rollback: echo undo-one >> {{ dir }}/order
  - id: two
    description: its run or verify command cannot be started, nor its rollback
    run: echo two >> {{ dir }}/orderRUN_TAIL
    verify: VERIFY
    rollback: echo undo-two >> {{ dir }}/orderROLLBACK_TAIL
"""


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux's limit on the length of one argument")
@pytest.mark.parametrize("which", ["run", "verify"])
def test_unstartable_run_verify_or_rollback_fails_and_the_other_rollbacks_still_run(tmp_path: Path, which: str) -> None:
    verify = "{run: 'test -s {{ dir }}/orderTAIL', attempts: 2, interval: 0.1}".replace("TAIL", TOO_LONG)
    text = (
        TOO_LONG_STEP.replace("RUN_TAIL", TOO_LONG if which == "run" else "")
        .replace("VERIFY", verify if which == "verify" else "{exit_code: 0}")
        .replace("ROLLBACK_TAIL", TOO_LONG)
    )
    write_runbook(tmp_path, "long", text)
    log = tmp_path / "audit.jsonl"
    result = cli(["run", "long", "-p", f"dir={tmp_path}"], cwd=tmp_path, log=log)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    what = "command" if which == "run" else "verify command"
    why = "bash: Argument list too long (E2BIG)"
    assert "[2/2] two FAILED in " in result.stdout and f"the {what} could not be started: {why}" in result.stdout
    assert f"rollback two FAILED: the rollback command could not be started: {why}" in result.stdout
    assert "rollback one done in " in result.stdout
    assert "rollback FAILED for: two" in result.stdout
    ran = ["one"] if which == "run" else ["one", "two"]
    assert (tmp_path / "order").read_text().split() == [*ran, "undo-one"]  # the rollback that can start still runs
    rows = events(log)
    assert [(e["event"], e.get("step")) for e in rows] == [
        ("run_start", None),
        ("step", "one"),
        ("step", "two"),
        ("rollback", "two"),
        ("rollback", "one"),
        ("run_end", None),
    ]
    step = rows[2]
    assert step["status"] == "failed" and step["reason"] == f"the {what} could not be started: {why}"
    if which == "run":
        assert (step["exit_code"], step["verify"], step["verify_exit_code"]) == (None, "not_run", None)
    else:
        assert (step["exit_code"], step["verify"], step["verify_exit_code"]) == (0, "failed", None)
    assert (rows[3]["status"], rows[3]["exit_code"]) == ("failed", None) and "E2BIG" in rows[3]["reason"]
    assert (rows[4]["status"], rows[4]["exit_code"]) == ("passed", 0) and "reason" not in rows[4]
    assert (rows[5]["status"], rows[5]["failed_step"]) == ("failed", "two")
    assert rows[5]["rollbacks"] == [{"step": "two", "exit_code": None}, {"step": "one", "exit_code": 0}]


def test_a_run_directory_that_cannot_be_made_ends_the_run_in_the_log_not_a_traceback(tmp_path: Path, monkeypatch) -> None:
    import io
    import tempfile

    from v4runtime.errors import RunbookError
    from v4runtime.runbooks.loader import load_file
    from v4runtime.runbooks.progress import Progress
    from v4runtime.runbooks.runner import Runner, RunOptions

    marker = tmp_path / "ran"
    path = write_runbook(tmp_path, "tmpfull", f"""
        title: T
        purpose: P
        steps:
          - id: one
            description: d
            run: touch {marker}
            verify: {{exit_code: 0}}
        """)

    def full(*args: object, **kwargs: object) -> str:
        raise OSError(28, "No space left on device")  # as root, a real full /tmp cannot be made here

    monkeypatch.setattr(tempfile, "mkdtemp", full)
    log = tmp_path / "a.jsonl"
    runner = Runner(load_file(path), RunOptions(log_path=log), Progress(io.StringIO()))
    with pytest.raises(RunbookError, match="cannot create the run directory in .*No space left on device; nothing was run"):
        runner.run()  # before: the OSError escaped, and the log had a run_start and no run_end
    assert not marker.exists()
    ends = [e for e in read(log) if e["event"] == "run_end"]
    assert len(ends) == 1 and ends[0]["status"] == "failed" and "No space left" in ends[0]["reason"]
