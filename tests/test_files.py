"""Reading files from disk (images, settings, cards): regular files only, a byte cap, typed errors, never a hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from v4runtime.errors import ConfigError, ImageError
from v4runtime.files import _read_capped, read_file
from v4runtime.streams import extract_streams

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)  # the bytes do not matter here: nothing decodes them

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")


def _reason(path: Path | str, **kwargs: object) -> tuple[str, str]:
    with pytest.raises(ImageError) as info:
        read_file(path, **kwargs)
    return info.value.reason, str(info.value)


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    data = PNG
    (tmp_path / "a.png").write_bytes(data)
    assert read_file(tmp_path / "a.png") == data
    assert read_file(str(tmp_path / "a.png"), max_bytes=len(data)) == data  # the cap itself is allowed


@needs_fifo
@pytest.mark.timeout(20)
def test_a_named_pipe_without_a_writer_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    assert _reason(tmp_path / "pipe.png") == ("not_a_file", f"{tmp_path / 'pipe.png'} is a named pipe, not a file")
    with pytest.raises(ImageError, match="named pipe"):  # the same through the public entry point
        extract_streams(tmp_path / "pipe.png")


@pytest.mark.timeout(20)
@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_an_endless_device_is_refused_not_read_until_memory_runs_out() -> None:
    reason, message = _reason("/dev/zero")
    assert reason == "not_a_file" and "character device" in message


def test_directory_missing_and_oversized(tmp_path: Path) -> None:
    assert _reason(tmp_path)[0] == "not_a_file"
    assert _reason(tmp_path / "missing.png")[0] == "not_found"
    (tmp_path / "big.png").write_bytes(b"\x89PNG" + bytes(200))
    reason, message = _reason(tmp_path / "big.png", max_bytes=100)
    assert reason == "too_large" and "204 bytes is over the limit of 100" in message


def test_a_broken_link_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "lost.png").symlink_to(tmp_path / "gone.png")
    assert _reason(tmp_path / "lost.png")[0] == "not_found"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_no_permission_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    path.write_bytes(PNG)
    path.chmod(0)
    assert _reason(path)[0] == "unreadable"


def test_more_bytes_than_the_size_said_stops_at_the_cap() -> None:
    """A file that grows after its size was checked is cut off one byte past the cap, not read on."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, bytes(300))
        os.close(write_end)
        with pytest.raises(ImageError) as info:
            _read_capped(read_end, "growing.png", 100)
        assert info.value.reason == "too_large"
        assert os.read(read_end, 1000) == bytes(199)  # 101 bytes taken: the cap plus the one that proved it
    finally:
        os.close(read_end)


def test_each_caller_names_its_error_type_and_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_file(tmp_path / "v4.yaml", error=ConfigError, what="config file ")
    assert (info.value.reason, str(info.value)) == ("not_found", f"config file {tmp_path / 'v4.yaml'}: no such file")
