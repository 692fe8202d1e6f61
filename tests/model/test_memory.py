"""A training corpus too large for memory is refused before any work, not killed by the kernel later."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from v4runtime.cli import main  # noqa: E402
from v4runtime.datasets import build_corpus  # noqa: E402
from v4runtime.errors import ConfigError  # noqa: E402
from v4runtime.model.data import load_corpus  # noqa: E402
from v4runtime.model.memory import HEADROOM, available_memory, check_fits, stream_bytes_per_image  # noqa: E402


def test_the_estimate_is_what_extraction_allocates(tmp_path: Path) -> None:
    build_corpus(tmp_path, clean=3, stego=2, seed=5, size=48)
    streams, _ = load_corpus(tmp_path)
    held = sum(array.nbytes for array in streams.arrays.values())
    assert held == len(streams) * stream_bytes_per_image()


def test_check_fits_against_a_given_amount() -> None:
    per_image = stream_bytes_per_image()
    check_fits(100, available=int(100 * per_image / HEADROOM) + 1)
    with pytest.raises(ConfigError) as info:
        check_fits(100, available=100 * per_image)
    assert info.value.reason == "out_of_memory"
    assert "100 images need" in str(info.value) and "at most about 8" in str(info.value)  # 84 or 85: floating point


def test_available_memory_reads_meminfo_and_the_cgroup_limit(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   2000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert available_memory(meminfo, cgroup) == 2_000_000 * 1024  # no cgroup files: meminfo alone
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text("5\n")
    assert available_memory(meminfo, cgroup) == 2_000_000 * 1024  # unlimited cgroup
    (cgroup / "memory.max").write_text(f"{1 << 30}\n")
    (cgroup / "memory.current").write_text(f"{1 << 29}\n")
    assert available_memory(meminfo, cgroup) == 1 << 29  # the cgroup's room is smaller
    assert available_memory(tmp_path / "none", tmp_path / "none") is None


def test_this_machine_reports_its_memory() -> None:
    available = available_memory()
    assert available is not None and available > 0


def test_oversized_corpus_fails_before_it_is_built(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "corpus"
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "m.onnx"),
                 "--build-clean", "5000000", "--build-stego", "0", "--build-seed", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "5,000,000 images need" in err and "GiB of memory" in err and err.count("\n") == 1
    assert not data.exists() and not (tmp_path / "m.onnx").exists()
