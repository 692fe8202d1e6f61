"""A careless or hostile caller: bad arguments, huge worker counts, threads, odd trees and file names."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from scanfix import TAIL, png_bytes

import v4runtime.scanner as scanner_mod
from v4runtime.cli import main
from v4runtime.errors import ConfigError
from v4runtime.scanner import Scanner


def scan(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["scan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- the Python API --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{"workers": 0}, {"workers": -1}, {"workers": "2"}, {"workers": None}, {"workers": 2.5}, {"workers": True},
     {"batch_size": 0}, {"batch_size": "x"}, {"executor": "bogus"}],
)
def test_bad_scan_many_arguments_are_config_errors_at_the_call(toy_model_path: Path, kwargs: dict[str, object]) -> None:
    """Checked when iter_scan is called, before a file is read: not a TypeError, nor a silent fallback."""
    s = Scanner(toy_model_path)
    with pytest.raises(ConfigError):
        s.iter_scan([png_bytes(0)], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        s.scan_many([png_bytes(0)], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.01, "abc", True, None, [0.5]])
def test_bad_thresholds_are_config_errors(toy_model_path: Path, value: object) -> None:
    if value is None:  # None means "the card's": not an error
        assert Scanner(toy_model_path, threshold=value).threshold == 0.5  # type: ignore[arg-type]
        return
    with pytest.raises(ConfigError, match="threshold"):
        Scanner(toy_model_path, threshold=value)  # type: ignore[arg-type]


def test_negative_zero_threshold_is_zero(toy_model_path: Path) -> None:
    s = Scanner(toy_model_path, threshold=-0.0)
    assert str(s.threshold) == "0.0" and s.scan(png_bytes(0)).is_stego


def test_workers_are_capped_at_the_cpus(toy_model_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """`workers=100000` must not fork 100,000 processes: it is capped, with a warning."""
    monkeypatch.setattr(scanner_mod, "available_cpus", lambda: 2)
    s = Scanner(toy_model_path)
    files = [png_bytes(0), png_bytes(1) + TAIL, b"junk", png_bytes(2)]
    with caplog.at_level(logging.WARNING, logger="v4runtime.scanner"):
        results = s.scan_many(files, workers=5, executor="process")
    try:
        assert s._processes is not None and s._processes[0] == 2
        assert s._processes[1]._max_workers == 2
    finally:
        s.close()
    assert "5 workers asked for, but only 2 CPU(s) available: using 2" in caplog.text
    assert [(r.is_stego, r.error_reason) for r in results] == [(False, None), (True, None), (False, "not_an_image"),
                                                               (False, None)]


@pytest.mark.timeout(120)
def test_one_scanner_from_several_threads(toy_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Callers with different worker counts used to shut down each other's pool mid-call
    (RuntimeError: cannot schedule new futures after shutdown)."""
    monkeypatch.setattr(scanner_mod, "available_cpus", lambda: 8)
    s = Scanner(toy_model_path)
    files = [png_bytes(i, size=(16, 16)) for i in range(6)] + [png_bytes(9, size=(16, 16)) + TAIL]
    errors: list[str] = []

    def work(workers: int) -> None:
        try:
            for _ in range(4):
                results = s.scan_many(files, workers=workers, executor="thread")
                assert [r.is_stego for r in results] == [False] * 6 + [True]
                assert all(r.error is None for r in results)
        except Exception as exc:  # reported below: an exception in a thread is otherwise lost
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(2 + i % 3,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s.close()
    assert s.scan(files[-1]).is_stego  # still usable after close
    assert [r.is_stego for r in s.scan_many(files, workers=2)][-1] is True
    s.close()


def test_inputs_that_are_neither_paths_nor_bytes(toy_model_path: Path) -> None:
    s = Scanner(toy_model_path)
    r = s.scan(123)  # type: ignore[arg-type]
    assert (r.path, r.error_reason, r.is_stego, r.probability) == ("<int>", "bad_input", False, None)
    assert r.error == "expected a path or bytes, got int: 123"
    results = s.scan_many([None, png_bytes(0) + TAIL], workers=1)  # type: ignore[list-item]
    assert [(r.error_reason, r.is_stego) for r in results] == [("bad_input", False), (None, True)]


def test_generators_duplicates_and_mixed_inputs(toy_model_path: Path, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(0) + TAIL)
    s = Scanner(toy_model_path)
    assert s.scan_many(iter([])) == []
    items = (x for x in [str(tmp_path / "a.png"), png_bytes(1), tmp_path / "a.png", bytearray(png_bytes(2))])
    results = s.scan_many(items, workers=2, batch_size=3)
    assert [(r.path, r.is_stego) for r in results] == [
        (str(tmp_path / "a.png"), True), ("<bytes>", False), (str(tmp_path / "a.png"), True), ("<bytes>", False)]


# -- the command line ------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_recursive_scan_of_a_very_deep_tree(toy_model_path: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`-r` walked the tree recursively: 1,200 nested folders ended in a RecursionError traceback."""
    folders = [str(tmp_path / "deep")]
    for _ in range(1200):
        folders.append(folders[-1] + "/d")
    try:
        for folder in folders:  # os.makedirs is itself recursive
            os.mkdir(folder)
        Path(folders[-1], "x.png").write_bytes(png_bytes(0) + TAIL)
        code, out, _ = scan(capsys, folders[0], "-r", "--jsonl", "--model", str(toy_model_path))
        assert code == 1
        (row,) = map(json.loads, out.splitlines())
        assert row["path"] == str(Path(folders[-1], "x.png")) and row["is_stego"] is True
    finally:  # shutil.rmtree, which pytest uses on old temporary folders, is recursive too
        Path(folders[-1], "x.png").unlink(missing_ok=True)
        for folder in reversed(folders):
            if os.path.isdir(folder):
                os.rmdir(folder)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_links_to_folders_are_reported_not_dropped(toy_model_path: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A stego file behind a link to a folder was silently skipped by `-r`; loops must not hang."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hidden.png").write_bytes(png_bytes(1) + TAIL)
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "clean.png").write_bytes(png_bytes(0))
    (tree / "a" / "up").symlink_to("..")  # a loop back to the top
    (tree / "self").symlink_to("self")  # a link to itself
    (tree / "elsewhere").symlink_to(outside)
    for recursive in (["-r"], []):
        code, out, err = scan(capsys, str(tree), *recursive, "--json", "--model", str(toy_model_path))
        doc = json.loads(out)
        if recursive:
            assert [Path(r["path"]).name for r in doc["results"]] == ["clean.png"] and code == 0
            assert doc["left_out"]["links_not_followed"] == [str(tree / "a" / "up"), str(tree / "elsewhere")]
            assert doc["left_out"]["not_files"] == [str(tree / "self")]
        else:
            assert doc["results"] == [] and doc["left_out"]["links_not_followed"] == [str(tree / "elsewhere")]
            assert doc["left_out"]["folders_not_entered"] == [str(tree / "a")]
        assert f"link(s) to folders, not followed, e.g. {doc['left_out']['links_not_followed'][0]}: name them" in err
    code, out, _ = scan(capsys, str(tree / "elsewhere"), "--jsonl", "--model", str(toy_model_path))  # named: followed
    assert code == 1 and json.loads(out)["path"] == str(tree / "elsewhere" / "hidden.png")


def test_unreadable_folder_is_an_error_not_a_silent_gap(toy_model_path: Path, image_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A sub-folder that cannot be listed (permissions) was skipped unseen by `-r`, exit 0 or 1."""
    locked = image_dir / "sub"
    real_scandir, real_listdir = os.scandir, os.listdir

    def deny(real):  # type: ignore[no-untyped-def]
        def wrapper(path=".", *args, **kwargs):  # type: ignore[no-untyped-def]
            if os.fspath(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(locked))
            return real(path, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(os, "scandir", deny(real_scandir))  # chmod 000 does not stop root: deny by hand
    monkeypatch.setattr(os, "listdir", deny(real_listdir))
    code, out, err = scan(capsys, str(image_dir), "-r", "--json", "--model", str(toy_model_path))
    assert code == 2
    doc = json.loads(out)
    assert sorted(Path(r["path"]).name for r in doc["results"]) == ["clean-a.png", "clean-b.jpg"]
    assert doc["left_out"]["folders_unreadable"] == [f"{locked}: Permission denied"]
    assert f"error: 1 folder(s) could not be read, their files were not scanned, e.g. {locked}: Permission denied" in err


@pytest.mark.skipif(sys.platform != "linux", reason="file names that are not UTF-8 need Linux")
@pytest.mark.timeout(120)
def test_file_names_that_are_not_utf8(toy_model_path: Path, tmp_path: Path) -> None:
    """With a strict stdout encoding (PYTHONIOENCODING=utf-8, an ASCII terminal) the text output
    died with a UnicodeEncodeError traceback; JSON keeps the name so Python gets the bytes back."""
    name = os.fsencode(tmp_path) + b"/caf\xe9-\xff.png"  # Latin-1 bytes: not UTF-8
    with open(name, "wb") as fh:
        fh.write(png_bytes(0))
    base = [sys.executable, "-m", "v4runtime", "scan", str(tmp_path), "--model", str(toy_model_path)]
    for encoding in ("utf-8", "ascii"):
        env = {**os.environ, "PYTHONIOENCODING": encoding}
        proc = subprocess.run(base, capture_output=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        assert b"clean       " + os.fsencode(tmp_path) + b"/caf\\udce9-\\udcff.png  p=" in proc.stdout
        assert b"Traceback" not in proc.stderr
        proc = subprocess.run([*base, "--json"], capture_output=True, env=env, timeout=60)
        assert proc.returncode == 0
        (row,) = json.loads(proc.stdout)["results"]
        assert os.fsencode(row["path"]) == name


@pytest.mark.timeout(120)
def test_cli_caps_a_huge_worker_count(toy_model_path: Path, image_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "v4runtime", "scan", str(image_dir), "-r", "--jsonl", "--workers", "100000",
         "--model", str(toy_model_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert [json.loads(line)["is_stego"] for line in proc.stdout.splitlines()] == [False, False, True]
    assert f"100000 workers asked for, but only {scanner_mod.available_cpus()} CPU(s) available" in proc.stderr
