"""Errors the scan itself hits exit 2 with one line on standard error: never 1, which means "stego found".

Results that cannot be written (`> /dev/full`), an exception no command handles, Ctrl-C while the
command modules are imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from scanfix import png_bytes

import v4runtime.cli as cli
import v4runtime.scanner_commands as scanner_commands
from v4runtime.cli import main

FULL = Path("/dev/full")


@pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full")
@pytest.mark.parametrize("mode", ["--jsonl", "--json", "--recursive"])
@pytest.mark.timeout(120)
def test_results_that_cannot_be_written_exit_2_with_one_line(toy_model_path: Path, tmp_path: Path, mode: str) -> None:
    """`scan --jsonl x.png > /dev/full` ended in an OSError traceback and status 1. Human output is
    buffered, so its write fails only at the final flush: that is checked too (--recursive)."""
    (tmp_path / "x.png").write_bytes(png_bytes(0))
    with FULL.open("w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "v4runtime", "scan", mode, str(tmp_path / "x.png"), "--model", str(toy_model_path)],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=60,
        )
    assert proc.returncode == 2
    assert proc.stderr == "error: cannot write the results to standard output: No space left on device\n"


def _boom(*args: object, **kwargs: object) -> object:
    raise ZeroDivisionError("a bug\nover two lines")


def test_an_unexpected_error_exits_2_with_one_line_and_a_hint(
    toy_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanner_commands, "collect_paths", _boom)
    monkeypatch.delenv("V4_DEBUG", raising=False)
    assert main(["scan", str(tmp_path), "--model", str(toy_model_path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("error: unexpected ZeroDivisionError: a bug over two lines "
                   "(rerun with V4_DEBUG=1 to see the traceback)\n")


def test_v4_debug_prints_the_traceback_and_still_exits_2(
    toy_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanner_commands, "collect_paths", _boom)
    monkeypatch.setenv("V4_DEBUG", "1")
    assert main(["scan", str(tmp_path), "--model", str(toy_model_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "in _boom" in err
    assert err.endswith("error: unexpected ZeroDivisionError: a bug over two lines\n")


def test_ctrl_c_while_the_commands_are_imported_is_interrupted_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """build_parser() imports every command module (numpy, onnx...): a Ctrl-C then was a traceback."""
    (tmp_path / "slow_command.py").write_text("raise KeyboardInterrupt  # Ctrl-C while this module is imported\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("v4runtime.scanner_commands", "slow_command"))
    assert main(["scan", "x.png"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.timeout(60)
def test_a_reader_that_goes_away_still_ends_quietly_with_141(toy_model_path: Path, tmp_path: Path) -> None:
    """`v4runtime scan ... | head -1`: kept as it was, a broken pipe is not an error to report."""
    for i in range(40):
        (tmp_path / f"f{i:02d}.png").write_bytes(png_bytes(i, size=(16, 16)))
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # nobody will read: the first write fails with EPIPE
    proc = subprocess.run([sys.executable, "-m", "v4runtime", "scan", "--jsonl", str(tmp_path), "--model",
                           str(toy_model_path)], stdout=write_fd, stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(write_fd)
    assert proc.returncode == 141
    assert proc.stderr == ""
