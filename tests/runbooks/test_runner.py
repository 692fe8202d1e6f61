"""Runner semantics, through the real CLI (subprocesses, real bash, real signals)."""

from __future__ import annotations

import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from v4runtime.runbooks.audit import sha256
from v4runtime.runbooks.execute import MAX_OUTPUT, Capture, run_command
from v4runtime.runbooks.loader import load_file
from v4runtime.runbooks.lock import RunbookLocked, hold, lock_path
from v4runtime.runbooks.progress import Progress
from v4runtime.runbooks.runner import Runner, RunOptions

from .helpers import alive, cli, events, start_cli, write_runbook

THREE_STEPS = """
title: Three steps
purpose: Roll back in reverse order.
params:
  out:
    description: file the steps append to
steps:
  - id: one
    description: first
    run: echo run-one >> {{ out }}
    verify: {exit_code: 0}
    rollback: echo undo-one >> {{ out }}
  - id: two
    description: second (no rollback)
    run: echo run-two >> {{ out }}
    verify: {exit_code: 0}
  - id: three
    description: third
    run: echo run-three >> {{ out }}
    verify: {exit_code: 0}
    rollback: echo undo-three >> {{ out }}
  - id: boom
    description: fails
    run: echo run-boom >> {{ out }}; echo "disk on fire"; exit 7
    verify: {exit_code: 0}
  - id: never
    description: not reached
    run: echo run-never >> {{ out }}
    verify: {exit_code: 0}
    rollback: echo undo-never >> {{ out }}
"""


def test_failing_step_rolls_back_completed_steps_in_reverse_order(tmp_path: Path) -> None:
    write_runbook(tmp_path, "three", THREE_STEPS)
    out, log = tmp_path / "order.txt", tmp_path / "audit.jsonl"
    result = cli(["run", "three", "--param", f"out={out}"], cwd=tmp_path, log=log)
    assert result.returncode == 1
    assert "runbook 'three' failed at step 'boom'" in result.stderr
    assert "exit status 7" in result.stdout and "| disk on fire" in result.stdout
    assert out.read_text().split() == ["run-one", "run-two", "run-three", "run-boom", "undo-three", "undo-one"]
    log_events = events(log)
    assert [e["step"] for e in log_events if e["event"] == "rollback"] == ["three", "one"]
    end = log_events[-1]
    assert (end["event"], end["status"], end["failed_step"]) == ("run_end", "failed", "boom")


def test_verify_that_does_not_match_fails_the_step(tmp_path: Path) -> None:
    write_runbook(
        tmp_path,
        "verify",
        """
        title: Verify
        purpose: Verification decides.
        steps:
          - id: prints-wrong
            description: exits 0 but prints the wrong thing
            run: echo "status=degraded"
            verify: {expect: '^status=ok$'}
            rollback: echo undone
        """,
    )
    log = tmp_path / "audit.jsonl"
    result = cli(["run", "verify"], cwd=tmp_path, log=log)
    assert result.returncode == 1
    assert "output did not match /^status=ok$/" in result.stdout
    step = next(e for e in events(log) if e["event"] == "step")
    assert (step["exit_code"], step["verify"], step["status"]) == (0, "failed", "failed")
    # the stopped step's own rollback runs (it may have partly applied)
    assert [e["step"] for e in events(log) if e["event"] == "rollback"] == ["prints-wrong"]


def test_verify_command_polls_and_retries_rerun_the_step(tmp_path: Path) -> None:
    write_runbook(
        tmp_path,
        "poll",
        """
        title: Poll
        purpose: Verify command with polling; step retries.
        params:
          dir:
            description: state directory
        steps:
          - id: eventually
            description: becomes ready on the third poll
            run: "true"
            verify:
              run: echo x >> {{ dir }}/polls; test "$(wc -l < {{ dir }}/polls)" -ge 3 && echo ready
              expect: ready
              attempts: 5
              interval: 0.05
          - id: flaky
            description: fails once, passes on the retry
            run: echo x >> {{ dir }}/tries; test "$(wc -l < {{ dir }}/tries)" -ge 2
            verify: {exit_code: 0}
            retries: 2
        """,
    )
    log = tmp_path / "audit.jsonl"
    result = cli(["run", "poll", "--param", f"dir={tmp_path}"], cwd=tmp_path, log=log)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len((tmp_path / "polls").read_text().split()) == 3
    attempts = [(e["step"], e["attempt"], e["status"]) for e in events(log) if e["event"] == "step"]
    assert attempts == [("eventually", 1, "passed"), ("flaky", 1, "failed"), ("flaky", 2, "passed")]


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    write_runbook(
        tmp_path,
        "slow",
        """
        title: Slow
        purpose: Times out.
        params:
          dir:
            description: where the grandchild writes its pid
        steps:
          - id: hang
            description: starts a grandchild, then hangs
            run: |
              ( sleep 300 & echo $! > {{ dir }}/grandchild.pid )
              sleep 300
            verify: {exit_code: 0}
            timeout: 1
        """,
    )
    log = tmp_path / "audit.jsonl"
    started = time.monotonic()
    result = cli(["run", "slow", "--param", f"dir={tmp_path}"], cwd=tmp_path, log=log)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert "TIMED OUT" in result.stdout
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert not alive(grandchild), f"grandchild {grandchild} survived the timeout"
    step = next(e for e in events(log) if e["event"] == "step")
    assert (step["status"], step["exit_code"]) == ("timeout", 124)


def test_interrupted_run_is_rolled_back_and_audited(tmp_path: Path) -> None:
    write_runbook(
        tmp_path,
        "long",
        """
        title: Long
        purpose: Gets interrupted.
        params:
          dir:
            description: state directory
        steps:
          - id: prepare
            description: completes
            run: echo prepared
            verify: {expect: prepared}
            rollback: echo undo-prepare >> {{ dir }}/order
          - id: wait
            description: hangs until interrupted
            run: |
              sleep 300 &
              echo $! > {{ dir }}/sleeper.pid
              wait
            verify: {exit_code: 0}
            rollback: echo undo-wait >> {{ dir }}/order
          - id: after
            description: never runs
            run: echo after >> {{ dir }}/order
            verify: {exit_code: 0}
        """,
    )
    log = tmp_path / "audit.jsonl"
    proc = start_cli(["run", "long", "--param", f"dir={tmp_path}"], tmp_path, log)
    pid_file = tmp_path / "sleeper.pid"
    deadline = time.monotonic() + 60  # generous: the machine may be loaded
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    sleeper = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the runner
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted at step 'wait'" in stderr
    assert not alive(sleeper)
    assert (tmp_path / "order").read_text().split() == ["undo-wait", "undo-prepare"]
    kinds = [(e["event"], e.get("step")) for e in events(log)]
    assert kinds == [
        ("run_start", None),
        ("step", "prepare"),
        ("step", "wait"),
        ("interrupted", "wait"),
        ("rollback", "wait"),
        ("rollback", "prepare"),
        ("run_end", None),
    ]
    assert events(log)[-1]["status"] == "interrupted"
    assert [e["signal"] for e in events(log) if e["event"] == "interrupted"] == ["SIGINT"]


def test_audit_log_records_every_step_with_digests(tmp_path: Path) -> None:
    write_runbook(
        tmp_path,
        "ok",
        """
        title: OK
        purpose: All pass.
        params:
          token:
            description: an API token
            secret: true
        steps:
          - id: a
            description: a
            run: echo "token is {{ token }}"
            verify: {expect: token is}
          - id: b
            description: b
            run: echo b
            verify: {run: "echo checked", expect: checked}
        """,
    )
    log = tmp_path / "audit.jsonl"
    result = cli(["run", "ok", "--param", "token=hunter2-secret"], cwd=tmp_path, log=log)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr
    assert "hunter2-secret" not in log.read_text()
    rows = events(log)
    assert rows[0]["params"] == {"token": "***"}
    steps = [e for e in rows if e["event"] == "step"]
    assert [s["step"] for s in steps] == ["a", "b"]
    first = steps[0]
    assert first["command_sha256"] == sha256('echo "token is ${RB_TOKEN}"')
    assert first["output_sha256"] == sha256("token is ***\n")
    for key in ("run_id", "runbook", "who", "when", "exit_code", "duration_s", "verify"):
        assert key in first
    assert {s["run_id"] for s in rows} == {rows[0]["run_id"]}
    shown = cli(["log", "--run", rows[0]["run_id"]], cwd=tmp_path, log=log)
    assert shown.returncode == 0
    assert [line.split()[3] for line in shown.stdout.splitlines()] == ["run_start", "step", "step", "run_end"]
    raw = cli(["log", "--json", "--last", "1"], cwd=tmp_path, log=log)
    assert json.loads(raw.stdout)["status"] == "succeeded"


def test_dry_run_prints_substituted_commands_and_runs_nothing(tmp_path: Path) -> None:
    write_runbook(tmp_path, "three", THREE_STEPS)
    out, log = tmp_path / "order.txt", tmp_path / "audit.jsonl"
    result = cli(["run", "three", "--dry-run", "--param", f"out={out} x"], cwd=tmp_path, log=log)
    assert result.returncode == 0
    assert f"run:      echo run-one >> '{out} x'" in result.stdout
    assert f"rollback: echo undo-three >> '{out} x'" in result.stdout
    assert not out.exists() and not Path(f"{out} x").exists() and not log.exists()


def test_confirm_gate_refuses_without_a_terminal(tmp_path: Path) -> None:
    write_runbook(
        tmp_path,
        "gated",
        """
        title: Gated
        purpose: Needs a human.
        params:
          dir:
            description: state directory
        steps:
          - id: before
            description: harmless
            run: touch {{ dir }}/before
            verify: {exit_code: 0}
          - id: drop
            description: dangerous
            run: touch {{ dir }}/dropped
            verify: {exit_code: 0}
            confirm: Drop the production table?
        """,
    )
    log = tmp_path / "audit.jsonl"
    refused = cli(["run", "gated", "--param", f"dir={tmp_path}"], cwd=tmp_path, log=log)
    assert refused.returncode == 2
    assert "step 'drop' needs confirmation and stdin is not a terminal; nothing was run" in refused.stderr
    assert "--yes" in refused.stderr
    assert not (tmp_path / "before").exists() and not log.exists()
    confirmed = cli(["run", "gated", "--yes", "--param", f"dir={tmp_path}"], cwd=tmp_path, log=log)
    assert confirmed.returncode == 0
    assert (tmp_path / "dropped").exists()
    assert any(e["event"] == "confirm" and e["answer"] == "yes (--yes)" for e in events(log))


def test_declined_gate_stops_and_rolls_back(tmp_path: Path) -> None:
    path = write_runbook(tmp_path, "three", THREE_STEPS.replace("    description: third\n", "    description: third\n    confirm: Go on?\n"))
    out, log = tmp_path / "order.txt", tmp_path / "audit.jsonl"
    opts = RunOptions(params={"out": str(out)}, log_path=log, interactive=True)
    runner = Runner(load_file(path), opts, Progress(io.StringIO(), tty=False))
    runner.ask = lambda question: "n"
    result = runner.run()
    assert (result.status, result.failed_step, result.exit_code) == ("failed", "three", 1)
    assert out.read_text().split() == ["run-one", "run-two", "undo-one"]


def test_from_and_only_select_steps(tmp_path: Path) -> None:
    write_runbook(tmp_path, "three", THREE_STEPS)
    out, log = tmp_path / "order.txt", tmp_path / "audit.jsonl"
    only = cli(["run", "three", "--only", "two", "--only", "three", "--param", f"out={out}"], cwd=tmp_path, log=log)
    assert only.returncode == 0
    assert out.read_text().split() == ["run-two", "run-three"]
    out.unlink()
    start = cli(["run", "three", "--from", "never", "--param", f"out={out}"], cwd=tmp_path, log=log)
    assert start.returncode == 0 and out.read_text().split() == ["run-never"]
    bad = cli(["run", "three", "--from", "nope", "--param", f"out={out}"], cwd=tmp_path, log=log)
    assert bad.returncode == 2 and "has no step 'nope' (steps: one, two, three, boom, never)" in bad.stderr


def test_rollback_drill_runs_every_rollback(tmp_path: Path) -> None:
    write_runbook(tmp_path, "three", THREE_STEPS)
    out, log = tmp_path / "order.txt", tmp_path / "audit.jsonl"
    result = cli(["run", "three", "--from", "three", "--rehearse-rollback", "--param", f"out={out}"], cwd=tmp_path, log=log)
    assert result.returncode == 1  # boom still fails: the drill only starts after every step passed
    drill = cli(["run", "three", "--only", "one", "--rehearse-rollback", "--param", f"out={out}"], cwd=tmp_path, log=log)
    assert drill.returncode == 0, drill.stdout
    assert out.read_text().split()[-2:] == ["run-one", "undo-one"]
    assert events(log)[-1]["status"] == "rehearsed"


def test_terminal_progress_shows_spinner_elapsed_and_verify(tmp_path: Path) -> None:
    path = write_runbook(
        tmp_path,
        "spin",
        """
        title: Spin
        purpose: Takes a moment.
        steps:
          - id: nap
            description: naps
            run: sleep 0.6; echo rested
            verify: {run: "echo fine", expect: fine}
            confirm: Take a nap?
        """,
    )
    screen = io.StringIO()
    runner = Runner(load_file(path), RunOptions(log_path=tmp_path / "a.jsonl", interactive=True), Progress(screen, tty=True))
    asked: list[str] = []
    runner.ask = lambda question: asked.append(question) or "y"
    assert runner.run().exit_code == 0
    text = screen.getvalue()
    assert asked == ["Take a nap? [y/N] "]
    assert "\r\033[2K" in text and any(frame in text for frame in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
    assert len(re.findall(r"\[1/1\] nap\s+0\.\ds", text)) >= 3  # elapsed time is redrawn while it runs
    assert "[1/1] nap passed in " in text and "(verify passed in " in text


def test_list_and_show(tmp_path: Path) -> None:
    write_runbook(tmp_path, "three", THREE_STEPS)
    listed = cli(["list"], cwd=tmp_path)
    assert listed.stdout.split() == ["three", "5", "steps", "Three", "steps"]
    shown = cli(["show", "three"], cwd=tmp_path)
    assert "out (string, required): file the steps append to" in shown.stdout
    assert "rollback:  echo undo-three >> {{ out }}" in shown.stdout


def test_second_interrupt_during_the_grace_period_kills_the_group_at_once(tmp_path: Path) -> None:
    write_runbook(
        tmp_path,
        "stubborn",
        """
        title: Stubborn
        purpose: Ignores SIGTERM, and so does its grandchild.
        params:
          dir:
            description: state directory
        steps:
          - id: hold
            description: hangs and shrugs off SIGTERM
            run: |
              (trap '' TERM; sleep 300) &
              echo $! > {{ dir }}/grandchild.pid
              trap '' TERM
              sleep 300
            verify: {exit_code: 0}
            rollback: echo undo-hold >> {{ dir }}/order
        """,
    )
    log = tmp_path / "audit.jsonl"
    proc = start_cli(["run", "stubborn", "--param", f"dir={tmp_path}"], tmp_path, log)
    pid_file = tmp_path / "grandchild.pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    time.sleep(0.3)  # let bash reach its own `trap '' TERM`
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)  # inside the SIGTERM grace period: nothing in the group has exited
    proc.send_signal(signal.SIGINT)  # the impatient second Ctrl-C
    stdout, stderr = proc.communicate(timeout=60)
    try:
        assert proc.returncode == 130, stdout + stderr
        assert not alive(grandchild), "the grandchild survived a double Ctrl-C"
        assert "[1/1] hold INTERRUPTED" in stdout
        assert (tmp_path / "order").read_text().split() == ["undo-hold"]
        kinds = [(e["event"], e.get("step")) for e in events(log)]
        assert kinds == [
            ("run_start", None),
            ("step", "hold"),
            ("interrupted", "hold"),
            ("rollback", "hold"),
            ("run_end", None),
        ]
    finally:
        if alive(grandchild):
            os.killpg(os.getpgid(grandchild), signal.SIGKILL)


def test_huge_output_is_capped_in_memory_and_on_screen(tmp_path: Path) -> None:
    path = write_runbook(
        tmp_path,
        "chatty",
        """
        title: Chatty
        purpose: Floods its output, in one line, with invalid UTF-8 at the end.
        steps:
          - id: flood
            description: 12 MB without a newline, then fails
            run: "echo first-line; head -c 12000000 /dev/zero | tr '\\\\0' x; printf '\\\\377 last-line\\\\n'; exit 3"
            verify: {exit_code: 0}
        """,
    )
    screen = io.StringIO()
    result = Runner(load_file(path), RunOptions(log_path=tmp_path / "a.jsonl"), Progress(screen, tty=False)).run()
    assert (result.status, result.exit_code) == ("failed", 1)
    output = result.steps[0].output
    assert len(output) <= MAX_OUTPUT + 100
    assert output.startswith("first-line\n") and output.endswith("\ufffd last-line\n")
    assert re.search(r"\[\.\.\. \d+ bytes of output omitted \.\.\.\]", output)
    assert len(screen.getvalue()) < 20_000, "a single huge line went to the screen"
    assert "more characters]" in screen.getvalue()


def test_hangup_is_an_interrupt_not_a_silent_death(tmp_path: Path) -> None:
    write_runbook(
        tmp_path,
        "remote",
        """
        title: Remote
        purpose: The operator's SSH session drops mid-step.
        params:
          dir:
            description: state directory
        steps:
          - id: wait
            description: hangs until the session goes away
            run: |
              sleep 300 &
              echo $! > {{ dir }}/sleeper.pid
              wait
            verify: {exit_code: 0}
            rollback: echo undo-wait >> {{ dir }}/order
        """,
    )
    log = tmp_path / "audit.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "v4runtime.runbooks", "run", "remote", "--param", f"dir={tmp_path}"],
        cwd=tmp_path,
        env={**os.environ, "V4_RUNBOOK_LOG": str(log)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    pid_file = tmp_path / "sleeper.pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    sleeper = int(pid_file.read_text())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the terminal is gone: writing progress now fails with EPIPE
    proc.stderr.close()
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=60) == 130
    assert not alive(sleeper), "the step kept running after the hang-up"
    assert (tmp_path / "order").read_text().split() == ["undo-wait"]
    end = events(log)[-1]
    assert (end["event"], end["status"], end["rollbacks"]) == ("run_end", "interrupted", [{"step": "wait", "exit_code": 0}])
    assert [e["signal"] for e in events(log) if e["event"] == "interrupted"] == ["SIGHUP"]  # an SSH drop, not a Ctrl-C


def test_flood_of_output_touches_no_disk_and_little_memory(tmp_path: Path) -> None:
    write_runbook(
        tmp_path,
        "flood",
        """
        title: Flood
        purpose: Prints 200 MB, far more than the runner keeps.
        steps:
          - id: flood
            description: 200 MB of y, then a last word
            run: head -c 200000000 /dev/zero | tr '\\0' y; echo done
            verify: {expect: 'ydone$'}
        """,
    )
    log, out, err = tmp_path / "audit.jsonl", tmp_path / "stdout", tmp_path / "stderr"
    limit = 16 << 20  # no file the run writes may grow past 16 MiB: output kept on disk would be killed (SIGXFSZ)
    peak = tmp_path / "peak-kib"
    # The runner is started by a small launcher that reports its peak memory: Linux carries a
    # process's peak over exec, so a runner forked straight from this (large) test process would
    # report the test process's size instead of its own.
    launcher = (
        "import os, subprocess, sys\n"
        "proc = subprocess.Popen(sys.argv[2:])\n"
        "_, status, usage = os.wait4(proc.pid, 0)\n"
        "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.run(
            [sys.executable, "-c", launcher, str(peak), sys.executable, "-m", "v4runtime.runbooks", "run", "flood"],
            cwd=tmp_path,
            env={**os.environ, "V4_RUNBOOK_LOG": str(log)},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
            timeout=300,
        )
    assert proc.returncode == 0, out.read_text() + err.read_text()
    peak_kib = int(peak.read_text())
    assert peak_kib * 1024 < 150_000_000, f"peak memory {peak_kib} KiB: the output was buffered"
    omitted = 200_000_005 - MAX_OUTPUT
    assert f"output truncated: 200000005 bytes printed, {omitted} omitted" in out.read_text()
    step = next(e for e in events(log) if e["event"] == "step")
    assert (step["status"], step["output_bytes"], step["output_omitted_bytes"]) == ("passed", 200_000_005, omitted)


def test_capture_keeps_head_and_tail_within_the_limit() -> None:
    capture = Capture(limit=1000)
    capture.add(b"<" + b"a" * 498 + b">")
    for _ in range(2000):
        capture.add(b"m" * 777)
        assert len(capture.head) + len(capture.tail) <= 1000
    capture.add(b"[" + b"z" * 498 + b"]")
    text = capture.text()
    assert text.startswith("<" + "a" * 498 + ">\n[... ") and text.endswith("\n[" + "z" * 498 + "]")
    assert capture.total == 1000 + 2000 * 777 and capture.omitted == 2000 * 777
    assert f"[... {2000 * 777} bytes of output omitted ...]" in text


def test_output_of_a_server_left_running_is_drained_not_blocked(tmp_path: Path) -> None:
    done = tmp_path / "done"
    # The background writer starts printing after the command ended, and far more than a pipe holds (64 KiB).
    command = f"(sleep 1; head -c 5000000 /dev/zero && touch {done}) & echo started"
    completed = run_command(command, cwd=tmp_path, env=os.environ, timeout=30)
    assert completed.exit_code == 0 and "started\n" in completed.output
    deadline = time.monotonic() + 30
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done.exists(), "the background writer was blocked or killed once the step ended"


HOLD = """
title: Hold
purpose: Holds its lock while it waits.
params:
  dir:
    description: state directory
  wait:
    description: seconds to wait
    type: integer
steps:
  - id: hold
    description: records its shell's pid, then waits
    run: echo $$ >> {{ dir }}/started; sleep {{ wait }}
    verify: {exit_code: 0}
"""


def test_second_run_is_refused_until_the_first_and_its_step_are_gone(tmp_path: Path) -> None:
    write_runbook(tmp_path, "hold", HOLD)
    write_runbook(tmp_path, "other", HOLD.replace("title: Hold", "title: Other"))
    log, started = tmp_path / "audit.jsonl", tmp_path / "started"
    first = subprocess.Popen(
        [sys.executable, "-m", "v4runtime.runbooks", "run", "hold", "-p", f"dir={tmp_path}", "-p", "wait=300"],
        cwd=tmp_path,
        env={**os.environ, "V4_RUNBOOK_LOG": str(log), "TMPDIR": str(tmp_path)},  # SIGKILLed: leaves its run dir
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (started.exists() and started.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphan = int(started.read_text())  # the step's shell: leader of its own process group
    try:
        second = cli(["run", "hold", "-p", f"dir={tmp_path}", "-p", "wait=0"], cwd=tmp_path, log=log)
        assert second.returncode == 75, second.stdout + second.stderr
        assert f"runbook 'hold' is already running (PID {first.pid}, run " in second.stderr
        assert "nothing was run" in second.stderr and second.stdout == ""
        assert len(started.read_text().split()) == 1
        assert {e["run_id"] for e in events(log)} == {events(log)[0]["run_id"]}
        (tmp_path / "o").mkdir()
        other = cli(["run", "other", "-p", f"dir={tmp_path / 'o'}", "-p", "wait=0"], cwd=tmp_path, log=log)
        assert other.returncode == 0, other.stdout + other.stderr  # another runbook is not held up
        dry = cli(["run", "hold", "--dry-run", "-p", f"dir={tmp_path}", "-p", "wait=0"], cwd=tmp_path, log=log)
        assert dry.returncode == 0 and "nothing is executed" in dry.stdout
        first.kill()  # SIGKILL: no cleanup code runs, the kernel drops the flock
        first.wait(timeout=30)
        assert alive(orphan), "the step should outlive its SIGKILLed runner (own session)"
        third = cli(["run", "hold", "-p", f"dir={tmp_path}", "-p", "wait=0"], cwd=tmp_path, log=log)
        assert third.returncode == 75, third.stdout + third.stderr  # its step still runs: still one run at a time
        assert "a step of an earlier run is still running (the run command of step 'hold'" in third.stderr
        assert f"process group {orphan}), but its runner (PID {first.pid}) is gone" in third.stderr
        assert f"kill -- -{orphan}" in third.stderr and third.stdout == ""
        assert len(started.read_text().split()) == 1
        os.killpg(orphan, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.05)
        fourth = cli(["run", "hold", "-p", f"dir={tmp_path}", "-p", "wait=0"], cwd=tmp_path, log=log)
        assert fourth.returncode == 0, fourth.stdout + fourth.stderr  # the step is gone: the lock is free
        assert len(started.read_text().split()) == 2
    finally:
        first.kill()
        if alive(orphan):
            os.killpg(orphan, signal.SIGKILL)


def test_locked_runbook_raises_a_typed_error_before_anything_runs(tmp_path: Path) -> None:
    path = write_runbook(tmp_path, "three", THREE_STEPS)
    out, log = tmp_path / "order.txt", tmp_path / "audit.jsonl"
    runner = Runner(load_file(path), RunOptions(params={"out": str(out)}, log_path=log), Progress(io.StringIO()))
    with hold(lock_path(log, "three"), "three", "other-run"), pytest.raises(RunbookLocked) as info:
        runner.run()
    assert info.value.pid == os.getpid() and info.value.path == tmp_path / "runbook-three.lock"
    assert "run other-run" in str(info.value)
    assert not out.exists() and not log.exists()
    assert runner.run().status == "failed"  # released: the run goes ahead (and fails at 'boom')
