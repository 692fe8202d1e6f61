"""`v4runtime scan` on inputs an audit found mishandled: every one is reported, none ends in a traceback.

Symbolic-link loops, an empty path, file names that hold a newline, multi-picture JPEGs (MPO),
``--extract`` on an appended text file and on lossy files.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scanfix import png_bytes

from v4runtime.cli import main
from v4runtime.errors import ImageError
from v4runtime.files import read_file
from v4runtime.scanner import Scanner
from v4runtime.stego import BIT_METHODS

NOTE = b"the drop is at pier 4, midnight\n"  # an appended text file: no NUL, no marker


def scan(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["scan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def _photo(seed: int = 1) -> Image.Image:
    """A smooth picture with mild noise, like a photo."""
    yy, xx = np.mgrid[0:120, 0:160]
    base = np.stack([xx * 1.6, yy * 2.1, (xx + yy) % 256], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 4, base.shape)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


# -- paths -----------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
@pytest.mark.timeout(60)
def test_a_symlink_loop_is_unreadable_and_the_other_files_are_scanned(
    toy_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ln -s a.png b.png; ln -s b.png a.png`: resolving it for de-duplication raised RuntimeError."""
    (tmp_path / "good.png").write_bytes(png_bytes(0))
    (tmp_path / "b.png").symlink_to("a.png")
    (tmp_path / "a.png").symlink_to("b.png")
    code, out, _ = scan(capsys, str(tmp_path), "--jsonl", "--model", str(toy_model_path))
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert code == 2
    assert sorted(rows) == ["a.png", "b.png", "good.png"]
    assert rows["good.png"]["error"] is None and rows["good.png"]["probability"] is not None
    for name in ("a.png", "b.png"):
        assert rows[name]["error_reason"] == "unreadable"
        assert "symbolic links" in rows[name]["error"]
    code, out, _ = scan(capsys, str(tmp_path / "good.png"), str(tmp_path / "a.png"), "--model", str(toy_model_path))
    assert code == 2
    assert out.splitlines()[1].startswith(f"UNREADABLE  {tmp_path / 'a.png'}  (unreadable: ")


def test_an_empty_path_is_not_found_not_the_current_folder(
    toy_model_path: Path, image_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`v4runtime scan "$FILE"` with FILE unset: Path("") is ".", which scanned the current folder."""
    monkeypatch.chdir(image_dir)
    code, out, _ = scan(capsys, "", "--jsonl", "--model", str(toy_model_path))
    (row,) = map(json.loads, out.splitlines())
    assert code == 2
    assert (row["path"], row["error_reason"]) == ("", "not_found")
    code, out, _ = scan(capsys, "", "--model", str(toy_model_path))
    assert code == 2 and out.startswith("UNREADABLE  ''  (not_found: ")
    with pytest.raises(ImageError) as info:
        read_file("")
    assert info.value.reason == "not_found"
    assert Scanner(toy_model_path).scan("").error_reason == "not_found"


@pytest.mark.skipif(sys.platform != "linux", reason="a newline in a file name needs a POSIX file system")
def test_a_file_name_cannot_forge_a_line_of_the_report(
    toy_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Control characters in a name are shown as escapes: no extra line, no terminal escape sequence."""
    name = "x.png\nclean       forged.png  p=0.0001\x1b[2J"
    (tmp_path / name).write_bytes(png_bytes(0) + b"AI42 payload\x00" * 8)
    code, out, _ = scan(capsys, str(tmp_path), "--model", str(toy_model_path))
    assert code == 1
    results = out.split("\n\n")[0].splitlines()
    assert len(results) == 1
    assert results[0].startswith(f"STEGO       {tmp_path}/x.png\\nclean       forged.png  p=0.0001\\x1b[2J  p=")
    assert "\x1b" not in out
    code, out, _ = scan(capsys, str(tmp_path), "--jsonl", "--model", str(toy_model_path))
    assert json.loads(out)["path"] == str(tmp_path / name)  # JSON keeps the name as it is


# -- multi-picture JPEG ----------------------------------------------------------------------------


def test_a_multi_picture_jpeg_is_clean_and_a_tail_after_it_is_found(tmp_path: Path) -> None:
    """With the shipped model: the second picture of an MPO counted as a tail (raw stego, p = 0.994)."""
    photo = _photo()
    mpo = _encode(photo, "MPO", save_all=True, append_images=[photo.resize((80, 60))])
    (tmp_path / "mpo.jpg").write_bytes(mpo)
    (tmp_path / "mpo-tail.jpg").write_bytes(mpo + NOTE)
    with Scanner() as scanner:
        clean, tail = scanner.scan_many([tmp_path / "mpo.jpg", tmp_path / "mpo-tail.jpg"])
    assert (clean.error, clean.format, clean.is_stego) == (None, "JPEG", False)
    assert (tail.error, tail.is_stego, tail.method) == (None, True, "raw")


def test_extract_reads_the_tail_after_the_last_picture_of_an_mpo(
    toy_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = _photo(2)
    mpo = _encode(photo, "MPO", save_all=True, append_images=[photo.resize((80, 60))])
    (tmp_path / "mpo.jpg").write_bytes(mpo)
    (tmp_path / "mpo-tail.jpg").write_bytes(mpo + b"AI42" + NOTE + b"\x00")
    code, out, _ = scan(capsys, str(tmp_path), "--jsonl", "--extract", "--model", str(toy_model_path))
    rows = {r["path"]: r for r in map(json.loads, out.splitlines())}
    assert code == 1
    assert rows[str(tmp_path / "mpo.jpg")]["is_stego"] is False
    flagged = rows[str(tmp_path / "mpo-tail.jpg")]
    assert flagged["is_stego"] is True
    payload = flagged["payload"]
    assert (payload["method"], payload["verified"], payload["text"]) == ("raw", True, NOTE.decode())


# -- --extract -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_extract_shows_an_appended_text_file(
    fmt: str, toy_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cat cover.png note.txt > appended.png`: the text has no NUL, so the raw read found nothing and
    --extract showed noise read from the LSBs instead."""
    path = tmp_path / f"appended.{fmt.lower()}"
    path.write_bytes(_encode(_photo(), fmt) + NOTE)
    code, out, _ = scan(capsys, str(path), "--jsonl", "--extract", "--threshold", "0", "--model", str(toy_model_path))
    assert code == 1
    payload = json.loads(out)["payload"]
    assert (payload["method"], payload["verified"], payload["ends_at"]) == ("raw", False, "end_of_file")
    assert (payload["kind"], payload["text"], payload["size"]) == ("text", NOTE.decode(), len(NOTE))
    code, out, _ = scan(capsys, str(path), "--extract", "--threshold", "0", "--model", str(toy_model_path))
    assert ("payload (raw, unverified: no AI42 marker, read to the end of the file, 32 B): "
            "'the drop is at pier 4, midnight\\n'") in out


@pytest.mark.parametrize(("fmt", "options"), [("JPEG", {"quality": 90}), ("WEBP", {"quality": 80})])
def test_extract_reads_no_lsbs_of_a_lossy_file(
    fmt: str, options: dict[str, object], toy_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lossy coding keeps no least significant bit: what an LSB read finds there is noise, not a payload."""
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(_encode(_photo(3), fmt, **options))
    code, out, _ = scan(capsys, str(path), "--jsonl", "--extract", "--threshold", "0", "--model", str(toy_model_path))
    assert code == 1
    payload = json.loads(out)["payload"]
    assert payload["method"] not in BIT_METHODS
    assert payload == {"method": None, "error": payload["error"]}  # nothing to recover: said so


def test_a_symlink_loop_in_a_fresh_process_exits_2_without_a_traceback(toy_model_path: Path, tmp_path: Path) -> None:
    """The installed entry point: the crash used to exit 1, which means "stego found"."""
    (tmp_path / "b.png").symlink_to("a.png")
    (tmp_path / "a.png").symlink_to("b.png")
    proc = subprocess.run([sys.executable, "-m", "v4runtime", "scan", str(tmp_path), "--model", str(toy_model_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.count("UNREADABLE") == 2
