"""``Scanner.iter_scan`` reads its sources lazily: an endless generator is scanned in bounded memory."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from scanfix import png_bytes

import v4runtime.scanner as scanner_mod
from v4runtime.scanner import Scanner

FILES = [png_bytes(seed) for seed in range(4)]


class Counted:
    """An endless stream of PNG files that counts how many have been taken from it.

    Past :data:`LIMIT` it fails instead of going on, so that a scanner that reads everything
    first fails the test rather than hanging it.
    """

    LIMIT = 5000

    def __init__(self) -> None:
        self.taken = 0

    def __iter__(self) -> Iterator[bytes]:
        for i in itertools.count():
            self.taken += 1
            assert self.taken <= self.LIMIT, "the scanner read the whole endless stream before scanning"
            yield FILES[i % len(FILES)]


def bound(workers: int) -> int:
    """Most sources iter_scan may hold beyond those yielded: look-ahead plus chunks in flight."""
    lookahead = max(workers * scanner_mod.DISPATCH, scanner_mod.AUTO_PROCESS_MIN_FILES)
    return lookahead + (scanner_mod.IN_FLIGHT_PER_WORKER * workers + 1) * scanner_mod.DISPATCH


@pytest.mark.parametrize(("workers", "executor"), [(1, "thread"), (2, "thread"), (2, "process")])
def test_an_endless_generator_is_read_only_as_far_as_needed(
    toy_model_path: Path, workers: int, executor: str
) -> None:
    source = Counted()
    with Scanner(toy_model_path) as s:
        results = list(itertools.islice(s.iter_scan(source, workers=workers, executor=executor), 300))
    assert len(results) == 300
    assert all(r.error is None and r.probability is not None for r in results)
    assert 300 <= source.taken <= 300 + bound(workers)


def test_streamed_results_match_a_list_scan_in_order(toy_model_path: Path) -> None:
    sources = [FILES[i % len(FILES)] for i in range(150)]
    with Scanner(toy_model_path) as s:
        listed = [r.probability for r in s.scan_many(sources, workers=2, executor="process")]
        streamed = [r.probability for r in s.iter_scan(iter(sources), workers=2, executor="process")]
    assert streamed == listed
    assert listed[: len(FILES)] == listed[len(FILES) : 2 * len(FILES)]  # same file, same answer, in order


def test_a_short_generator_still_reaches_both_workers(toy_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk size comes from the look-ahead: 20 files on 2 workers are two chunks of 10, not one of 16."""
    seen: list[int] = []
    original = Scanner._scan_chunk

    def spy(self: Scanner, task: tuple[int, list[bytes]]) -> list[scanner_mod.ScanResult]:
        seen.append(len(task[1]))
        return original(self, task)

    monkeypatch.setattr(Scanner, "_scan_chunk", spy)
    with Scanner(toy_model_path) as s:
        results = list(s.iter_scan((FILES[i % 4] for i in range(20)), workers=2, executor="thread"))
    assert len(results) == 20
    assert sorted(seen) == [10, 10]


def test_stopping_early_leaves_no_chunk_queued(toy_model_path: Path) -> None:
    source = Counted()
    with Scanner(toy_model_path) as s:
        stream = s.iter_scan(source, workers=2, executor="thread")
        next(stream)
        stream.close()
        taken = source.taken
        assert s.scan_many(FILES, workers=2, executor="thread")[0].error is None  # the pool is still usable
    assert source.taken == taken
