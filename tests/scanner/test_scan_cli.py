"""`v4runtime scan`: exit codes 0/1/2, --jsonl/--json shapes, folders, unreadable files counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scanfix import png_bytes

from v4runtime.cli import main


def scan(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["scan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_exit_0_when_all_clean(toy_model_path: Path, image_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = scan(capsys, str(image_dir / "clean-a.png"), str(image_dir / "clean-b.jpg"),
                          "--model", str(toy_model_path))
    assert code == 0
    assert "clean-a.png" in out and "summary" in out
    assert err == ""  # no progress bar when stderr is not a terminal


def test_exit_1_when_stego_found_recursive(toy_model_path: Path, image_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = scan(capsys, str(image_dir), "--recursive", "--jsonl", "--model", str(toy_model_path))
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["clean-a.png", "clean-b.jpg", "tail.png"]
    for r in rows:
        assert {"path", "is_stego", "probability", "method", "error"} <= set(r)
        assert r["error"] is None
    assert [r["is_stego"] for r in rows] == [False, False, True]
    assert rows[2]["method"] == "raw"


def test_folder_without_recursive_skips_subfolders(toy_model_path: Path, image_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = scan(capsys, str(image_dir), "--jsonl", "--model", str(toy_model_path))
    assert code == 0 and len(out.splitlines()) == 2
    # what was left out is said, not dropped unseen: the sub-folder and the text file
    assert f"left out 1 sub-folder(s), e.g. {image_dir / 'sub'}: scan them with --recursive" in err
    assert f"left out 1 file(s) that are not images by name or content, e.g. {image_dir / 'notes.txt'}" in err


def test_a_renamed_image_in_a_folder_is_still_scanned(toy_model_path: Path, image_dir: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Folders are read by content too: renaming a stego file does not take it out of the scan."""
    (image_dir / "holiday.dat").write_bytes((image_dir / "sub" / "tail.png").read_bytes())
    (image_dir / "no-suffix").write_bytes((image_dir / "clean-b.jpg").read_bytes())
    code, out, err = scan(capsys, str(image_dir), "--json", "--model", str(toy_model_path))
    assert code == 1
    doc = json.loads(out)
    scanned = {Path(r["path"]).name: r for r in doc["results"]}
    assert sorted(scanned) == ["clean-a.png", "clean-b.jpg", "holiday.dat", "no-suffix"]
    assert scanned["holiday.dat"]["is_stego"] and scanned["holiday.dat"]["format"] == "PNG"
    assert scanned["no-suffix"]["format"] == "JPEG"
    assert doc["left_out"] == {"not_images": [str(image_dir / "notes.txt")], "not_files": [],
                               "folders_not_entered": [str(image_dir / "sub")], "links_not_followed": [],
                               "folders_unreadable": []}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
@pytest.mark.timeout(60)
def test_pipes_and_broken_links_in_a_folder_are_reported_never_waited_on(
    toy_model_path: Path, image_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reading a named pipe blocks until someone writes to it; a scan must neither hang nor drop it unseen."""
    os.mkfifo(image_dir / "pipe")  # no image name: left out, and said so
    os.mkfifo(image_dir / "upload.png")  # an image name: scanned, so reported as unreadable
    (image_dir / "lost.jpg").symlink_to(image_dir / "deleted.jpg")
    code, out, err = scan(capsys, str(image_dir), "--json", "--model", str(toy_model_path))
    assert code == 2
    doc = json.loads(out)
    errors = {Path(r["path"]).name: (r["error_reason"], r["error"]) for r in doc["results"] if r["error"]}
    assert errors == {
        "lost.jpg": ("not_found", f"{image_dir / 'lost.jpg'}: no such file"),
        "upload.png": ("not_a_file", f"{image_dir / 'upload.png'} is a named pipe, not a file"),
    }
    assert doc["left_out"]["not_files"] == [str(image_dir / "pipe")]
    assert f"left out 1 entry(ies) that are not files (pipes, sockets, devices, broken links), e.g. {image_dir / 'pipe'}" in err
    code, out, _ = scan(capsys, str(image_dir / "pipe"), "--jsonl", "--model", str(toy_model_path))  # named directly
    assert code == 2 and json.loads(out)["error_reason"] == "not_a_file"


def test_an_empty_folder_scans_nothing_and_says_so(toy_model_path: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = scan(capsys, str(tmp_path), "--model", str(toy_model_path))
    assert code == 0 and any(line.split() == ["files", "0"] for line in out.splitlines())
    assert "warning: no image files found: nothing was scanned" in err


def test_exit_2_unreadable_reported_and_counted(toy_model_path: Path, image_dir: Path,
                                               tmp_path_factory: pytest.TempPathFactory,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    tmp_path = tmp_path_factory.mktemp("bad")
    (tmp_path / "broken.png").write_bytes(png_bytes(5)[:60])
    (tmp_path / "empty.gif").write_bytes(b"")
    args = [str(image_dir), str(tmp_path / "broken.png"), str(tmp_path / "empty.gif"),
            str(tmp_path / "missing.webp"), "-r", "--model", str(toy_model_path), "--workers", "2"]
    code, out, _ = scan(capsys, str(tmp_path / "empty.gif"), *args, "--jsonl")  # named twice: scanned once
    assert code == 2  # unreadable wins over stego found
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 6
    bad = [r for r in rows if r["error"] is not None]
    assert sorted(Path(r["path"]).name for r in bad) == ["broken.png", "empty.gif", "missing.webp"]
    assert all(r["is_stego"] is False and r["probability"] is None for r in bad)
    code, out, _ = scan(capsys, *args)
    assert code == 2
    assert "UNREADABLE" in out
    assert any(line.split() == ["unreadable", "3"] for line in out.splitlines())
    assert any(line.split() == ["stego", "1"] for line in out.splitlines())


def test_json_document(toy_model_path: Path, image_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = scan(capsys, str(image_dir), "-r", "--json", "--model", str(toy_model_path),
                        "--threshold", "0.0")
    assert code == 1
    doc = json.loads(out)
    assert doc["threshold"] == 0.0 and doc["model"] == "toy" and len(doc["model_sha256"]) == 64
    assert all(r["is_stego"] for r in doc["results"])


def test_paths_after_options(toy_model_path: Path, image_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Options between paths (`scan a.png --jsonl b.png`) do not drop the paths after them."""
    code, out, _ = scan(capsys, str(image_dir / "clean-a.png"), "--jsonl", str(image_dir / "clean-b.jpg"),
                        "--model", str(toy_model_path), str(image_dir / "sub" / "tail.png"))
    assert code == 1
    assert [Path(json.loads(line)["path"]).name for line in out.splitlines()] == ["clean-a.png", "clean-b.jpg", "tail.png"]
    with pytest.raises(SystemExit) as stop:  # an unknown option is still an error, not a path
        main(["scan", str(image_dir / "clean-a.png"), "--jsonl", "--no-such-option"])
    assert stop.value.code == 2 and "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_bad_options_exit_2(toy_model_path: Path, image_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = scan(capsys, str(image_dir), "--threshold", "7", "--model", str(toy_model_path))
    assert code == 2 and "threshold" in err
    code, _, err = scan(capsys, str(image_dir), "--model", "no-such-model")
    assert code == 2 and "unknown model" in err


def test_console_script_subprocess(toy_model_path: Path, image_dir: Path) -> None:
    """The installed entry point, in a fresh process: the exit status reaches the shell."""
    proc = subprocess.run(
        [sys.executable, "-m", "v4runtime", "scan", str(image_dir / "sub" / "tail.png"), "--jsonl",
         "--model", str(toy_model_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["is_stego"] is True


def test_extract_recovers_payloads(toy_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--extract runs v4runtime.stego on flagged files: both bit orders, marker first."""
    from v4runtime import stego

    cover = png_bytes(4, size=(64, 64))
    (tmp_path / "lsb.png").write_bytes(stego.embed(cover, "meet at dawn", "lsb.rgb", "PNG", bit_order="msb-first"))
    (tmp_path / "tail.png").write_bytes(stego.embed(cover, "x" * 80, "raw", "PNG"))
    (tmp_path / "clean.png").write_bytes(cover)
    code, out, _ = scan(capsys, str(tmp_path), "--jsonl", "--extract", "--threshold", "0.0",
                        "--model", str(toy_model_path))
    assert code == 1
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    lsb = rows["lsb.png"]["payload"]
    assert (lsb["method"], lsb["bit_order"], lsb["verified"], lsb["text"]) == ("lsb.rgb", "msb-first", True,
                                                                               "meet at dawn")
    assert rows["tail.png"]["payload"]["text"] == "x" * 80 and rows["tail.png"]["method"] == "raw"
    assert rows["clean.png"]["payload"].get("verified") is not True  # flagged only by threshold 0: no marker
    code, out, _ = scan(capsys, str(tmp_path / "lsb.png"), "--extract", "--threshold", "0.0",
                        "--model", str(toy_model_path))
    assert "payload (lsb.rgb, 12 B): 'meet at dawn'" in out


def test_extract_without_a_marker_picks_the_bit_order_that_reads_as_text(
    toy_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without AI42 both bit orders read something up to a NUL; the text one wins, and binary shows as hex."""
    from v4runtime import stego

    cover = png_bytes(5, size=(64, 64))
    note = "the meeting moved to the north gate, bring the second key"
    (tmp_path / "msb.png").write_bytes(stego.embed(cover, note, "lsb.rgb", "PNG", bit_order="msb-first",
                                                   marker=False))
    (tmp_path / "binary.png").write_bytes(stego.embed(cover, bytes(range(1, 200)), "raw", "PNG", marker=False))
    code, out, _ = scan(capsys, str(tmp_path), "--jsonl", "--extract", "--threshold", "0.0",
                        "--model", str(toy_model_path))
    assert code == 1
    rows = {Path(r["path"]).name: r["payload"] for r in map(json.loads, out.splitlines())}
    msb = rows["msb.png"]
    assert (msb["method"], msb["bit_order"], msb["verified"], msb["kind"]) == ("lsb.rgb", "msb-first", False, "text")
    assert msb["text"] == note
    raw = rows["binary.png"]
    assert (raw["method"], raw["verified"], raw["kind"], raw["size"]) == ("raw", False, "binary", 199)
    code, out, _ = scan(capsys, str(tmp_path / "binary.png"), "--extract", "--threshold", "0.0",
                        "--model", str(toy_model_path))
    assert "payload (raw, unverified: no AI42 marker, read up to a NUL, 199 B): binary, hex 0102030405" in out


def test_progress_bar_only_on_a_terminal(toy_model_path: Path, image_dir: Path) -> None:
    import io

    from v4runtime.scanner_commands import _progress_bar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert _progress_bar(3, io.StringIO()) is None
    term = Terminal()
    bar = _progress_bar(3, term)
    for _ in range(3):
        bar.advance(1)
    bar.close()
    assert "\r" in term.getvalue() and "3/3" in term.getvalue()


def test_many_files_with_worker_processes(toy_model_path: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """From 64 files on, --workers 2 scans in worker processes: every file still comes back, in order."""
    for i in range(70):
        (tmp_path / f"f{i:03d}.png").write_bytes(png_bytes(i, size=(16, 16)))
    (tmp_path / "f999.png").write_bytes(b"\x89PNG broken")
    code, out, _ = scan(capsys, str(tmp_path), "--jsonl", "--workers", "2", "--model", str(toy_model_path))
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 2
    assert [Path(r["path"]).name for r in rows] == sorted(p.name for p in tmp_path.iterdir())
    assert [Path(r["path"]).name for r in rows if r["error"]] == ["f999.png"]
