"""Scan files for hidden payloads with the V4 detector.

:class:`Scanner` is the one place in v4runtime that creates an ``onnxruntime.InferenceSession`` for
detection: it resolves the model once (sha256 and signature checked by
:func:`v4runtime.model.registry.resolve_model`), opens one session and reuses it for every file it
scans. :meth:`Scanner.scan` handles one file; :meth:`Scanner.scan_many` handles many, in batches, with
worker threads or processes. A file that cannot be read becomes a :class:`ScanResult` whose ``error``
is set: it is reported and counted, never dropped. So does a file whose worker process died (killed,
out of memory) twice while scanning it (see :data:`POOL_TRIES`).
"""

from __future__ import annotations

import collections
import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from v4runtime.errors import ConfigError, ImageError, ModelError, V4Error
from v4runtime.files import read_file
from v4runtime.streams.spec import (
    CAPABILITY_SLICE,
    METHODS,
    OUTPUT_GATES,
    OUTPUT_METHODS,
    OUTPUT_STEGO,
    STREAM_NAMES,
    STREAM_SPECS,
)
from v4runtime.workers import signals_deferred

log = logging.getLogger(__name__)

#: Decision threshold used when neither the caller nor the model card gives one.
DEFAULT_THRESHOLD = 0.5

#: Files per inference call in :meth:`Scanner.scan_many`. One: on CPU the detector gains nothing
#: from batching, while holding a batch's planes (3.4 MB per file) costs cache
#: (``v4runtime bench scan`` and the docstring of :meth:`Scanner.scan_many`).
DEFAULT_BATCH = 1

#: Files handed to a worker at a time (amortises the hand-off between processes).
DISPATCH = 16

#: Chunks submitted to a pool per worker ahead of the one being read: keeps workers busy while
#: bounding what a long (or endless) stream of sources holds in memory.
IN_FLIGHT_PER_WORKER = 2

#: Times a chunk of files is handed to a pool. A worker process that dies (the OOM killer, a
#: SIGKILL, a crash in a decoder) breaks its whole pool: the pool is replaced and the chunks it had
#: not finished are scanned again in the new one; a chunk whose pool breaks on its last try comes
#: back as results with ``error_reason`` ``worker_died`` (a file that kills its worker would kill
#: every new one).
POOL_TRIES = 2

#: ``error_reason`` values that are not the file's fault: an unexpected exception while decoding
#: (``internal``), a worker that died, streams of the wrong shape, or input that is neither a path nor
#: bytes. Every other reason describes the file (``truncated``, ``not_an_image``, ...).
INTERNAL_REASONS = frozenset({"internal", "worker_died", "bad_streams", "bad_input"})

#: ``executor="auto"`` uses processes from this many files on (below, start-up costs more than it saves).
AUTO_PROCESS_MIN_FILES = 64

#: Executors :meth:`Scanner.scan_many` accepts.
EXECUTORS = ("auto", "thread", "process")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


#: Number of inference sessions this process has created (see :func:`create_session`).
SESSIONS_CREATED = 0
_SESSIONS_LOCK = threading.Lock()


@dataclass
class Timings:
    """Per-stage wall time of one scan, in milliseconds.

    In a batched scan the inference time is the batch's time divided by the files in it.
    """

    read_ms: float = 0.0
    streams_ms: float = 0.0
    inference_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        """Read + decode/streams + inference."""
        return self.read_ms + self.streams_ms + self.inference_ms


@dataclass
class ScanResult:
    """The verdict on one file.

    Attributes:
        path: the file scanned (``"<bytes>"`` for in-memory input).
        is_stego: ``probability >= threshold``; ``False`` when ``error`` is set.
        probability: the model's stego probability (``None`` when the file could not be read).
        method: the most likely embedding method (``None`` when clean or unreadable).
        method_probabilities: probability per method, masked by the file's capability mask.
        format: image format detected from the bytes (``PNG``, ``JPEG``, ...), ``None`` if unknown.
        timings: per-stage wall time.
        explanation: the fusion gate's weight per stream: which views of the file drove the decision.
        error: ``None`` when the file was read; otherwise a one-line message.
        error_reason: the machine-readable reason of the error (``truncated``, ``not_an_image``, ...).
    """

    path: str
    is_stego: bool = False
    probability: float | None = None
    method: str | None = None
    method_probabilities: dict[str, float] = field(default_factory=dict)
    format: str | None = None
    timings: Timings = field(default_factory=Timings)
    explanation: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    error_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (timings include ``total_ms``)."""
        data = asdict(self)
        data["timings"]["total_ms"] = self.timings.total_ms
        return data


def create_session(
    model_path: str | os.PathLike[str], *, intra_op_threads: int = 1, skip_empty_streams: bool = True
) -> Any:
    """Open an onnxruntime CPU session on ``model_path`` and count it.

    Spinning is disabled: several workers share few cores, and a spinning thread steals them.
    With ``skip_empty_streams`` (the default) the session runs the graph rewritten by
    :func:`v4runtime.model.empty_streams.skip_empty_streams`: same outputs, but the encoders of
    all-zero streams (no transparency, palette, EXIF or tail) are not run. The file is not changed.

    Raises:
        ModelError: onnxruntime cannot load the file.
    """
    import onnxruntime as ort

    global SESSIONS_CREATED
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(intra_op_threads))
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    source: str | bytes = str(model_path)
    if skip_empty_streams:
        source = _rewritten(model_path)
    try:
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"onnxruntime cannot load {model_path}: {exc}") from exc
    with _SESSIONS_LOCK:
        SESSIONS_CREATED += 1
    return session


def _rewritten(model_path: str | os.PathLike[str]) -> str | bytes:
    """The model with empty-stream skipping as bytes; the plain path if the rewrite does not apply.

    An optimisation must never stop a model from loading: a file onnx cannot parse is left to
    onnxruntime (whose error is the one reported), and a graph the rewrite cannot handle runs whole.
    """
    import onnx

    from v4runtime.model.empty_streams import skip_empty_streams

    try:
        model = onnx.load(str(model_path))
    except Exception:  # onnxruntime reports the file's problem below
        return str(model_path)
    try:
        return skip_empty_streams(model).SerializeToString()
    except Exception as exc:  # any failure: run the graph as it is
        log.warning("%s: running every stream encoder (empty-stream skipping does not apply: %s)", model_path, exc)
        return str(model_path)


def _resolve(model: str | os.PathLike[str] | None) -> Any:
    from v4runtime.model.registry import resolve_model

    return resolve_model(None if model is None else str(model))


def _card_threshold(card: Any) -> float | None:
    value = getattr(card, "threshold", None) if card is not None else None
    return float(value) if value is not None else None


def read_input(source: str | os.PathLike[str] | bytes) -> tuple[str, bytes]:
    """Return ``(display path, bytes)`` for a path or an in-memory file.

    Raises:
        ImageError: reason ``not_found``, ``not_a_file`` (a directory, pipe, socket or device),
            ``too_large`` or ``unreadable`` (see :func:`v4runtime.files.read_file`).
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>", bytes(source)
    return str(source), read_file(source)


def stream_arrays(streams: Any) -> dict[str, np.ndarray]:
    """The eight model inputs (without batch axis) from a ``Streams`` object, by stream name."""
    source = streams if isinstance(streams, dict) else streams.as_inputs()
    arrays = {}
    for spec in STREAM_SPECS:
        arr = np.asarray(source[spec.name], dtype=np.float32)
        if arr.shape != spec.shape:
            raise ImageError(
                f"stream {spec.name} has shape {arr.shape}, expected {spec.shape}", reason="bad_streams"
            )
        arrays[spec.name] = arr
    return arrays


def stream_format(streams: Any) -> str | None:
    """The image format name (``PNG``, ``JPEG``, ...) a ``Streams`` object reports, if any."""
    info = getattr(streams, "info", None)
    return getattr(info, "format", None)


def extract(data: bytes) -> tuple[dict[str, np.ndarray], str | None]:
    """Decode ``data`` and extract the eight streams; returns ``(arrays, format name)``.

    Raises:
        ImageError: the bytes are not a readable image.
    """
    from v4runtime.streams import extract_streams

    streams = extract_streams(data)
    return stream_arrays(streams), stream_format(streams)


@dataclass
class Prepared:
    """A file read and turned into streams, waiting for inference."""

    result: ScanResult
    arrays: dict[str, np.ndarray] | None


class Scanner:
    """Loads the detector once and scans files with it.

    Args:
        model: a registered model name (default ``v4-default``) or a path to an ONNX file.
        threshold: decision threshold on the stego probability; defaults to the model card's, else 0.5.
        intra_op_threads: onnxruntime threads for one inference call. Keep 1 when scanning with
            several workers: each worker process has its own session and its own core.
        zero_streams: stream names fed as zeros (used by the stream ablation; empty in normal use).

    Raises:
        ModelError: the model cannot be found, fails its sha256 or signature check, or cannot be loaded.
        ConfigError: the threshold is outside [0, 1] or a stream name to zero is unknown.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        threshold: float | None = None,
        intra_op_threads: int = 1,
        zero_streams: Iterable[str] = (),
    ) -> None:
        self.resolved = _resolve(model)
        self.model_path = Path(self.resolved.path)
        self.model_sha256: str = getattr(self.resolved, "sha256", "")
        self.card = getattr(self.resolved, "card", None)
        if threshold is None:
            threshold = _card_threshold(self.card)
        self.threshold = DEFAULT_THRESHOLD if threshold is None else _check_threshold(threshold)
        self.intra_op_threads = intra_op_threads
        self.zero_streams = frozenset(zero_streams)
        unknown = self.zero_streams - set(STREAM_NAMES)
        if unknown:
            raise ConfigError(f"unknown stream(s) to zero: {', '.join(sorted(unknown))}")
        self.session = create_session(self.model_path, intra_op_threads=intra_op_threads)
        self._output_names = [o.name for o in self.session.get_outputs()]
        self._has_gates = OUTPUT_GATES in self._output_names
        self._threads: tuple[int, ThreadPoolExecutor] | None = None
        self._processes: tuple[int, ProcessPoolExecutor] | None = None
        self._pools_lock = threading.Lock()  # scan_many may be called from several threads at once

    @property
    def model_name(self) -> str:
        """The model card's name, else the file's stem."""
        return str(getattr(self.card, "name", None) or self.model_path.stem)

    # -- one file -------------------------------------------------------------------------------

    def scan(self, source: str | os.PathLike[str] | bytes) -> ScanResult:
        """Scan one file (a path or its bytes).

        Never raises for a bad image: the result's ``error`` says what went wrong.
        """
        prepared = self._prepare(source)
        if prepared.arrays is not None:
            self._infer([prepared])
        return prepared.result

    def scan_arrays(self, arrays: dict[str, np.ndarray], path: str = "<streams>") -> ScanResult:
        """Run the model on streams already extracted (e.g. by an evaluation that caches them)."""
        prepared = Prepared(ScanResult(path=path), stream_arrays(arrays))
        self._infer([prepared])
        return prepared.result

    def _prepare(self, source: str | os.PathLike[str] | bytes) -> Prepared:
        if not isinstance(source, str | os.PathLike | bytes | bytearray | memoryview):
            result = ScanResult(path=f"<{type(source).__name__}>", error_reason="bad_input",
                                error=f"expected a path or bytes, got {type(source).__name__}: {source!r:.80}")
            return Prepared(result, None)
        result = ScanResult(path=source if isinstance(source, str) else "<bytes>")
        if isinstance(source, os.PathLike):
            result.path = str(source)
        t0 = time.perf_counter()
        try:
            result.path, data = read_input(source)
            t1 = time.perf_counter()
            result.timings.read_ms = (t1 - t0) * 1000
            arrays, fmt = extract(data)
            result.timings.streams_ms = (time.perf_counter() - t1) * 1000
            result.format = fmt
            return Prepared(result, arrays)
        except V4Error as exc:
            result.error, result.error_reason = str(exc), exc.reason
        except Exception as exc:  # a decoder bug must not take a whole batch down
            result.error, result.error_reason = f"unexpected {type(exc).__name__}: {exc}", "internal"
        return Prepared(result, None)

    # -- inference ------------------------------------------------------------------------------

    def _feeds(
        self, batch: Sequence[dict[str, np.ndarray]], zero_streams: frozenset[str]
    ) -> dict[str, np.ndarray]:
        feeds = {}
        for name in STREAM_NAMES:
            # One file: a view with a batch axis, not a 3.4 MB copy of its planes.
            stacked = batch[0][name][None] if len(batch) == 1 else np.stack([arrays[name] for arrays in batch])
            if name in zero_streams:
                stacked = np.zeros_like(stacked)
                if name == "format":  # keep the capability mask: it is a constraint, not evidence
                    cap = np.stack([arrays[name][CAPABILITY_SLICE] for arrays in batch])
                    stacked[:, CAPABILITY_SLICE] = cap
            feeds[name] = stacked
        return feeds

    def run_model(
        self, batch: Sequence[dict[str, np.ndarray]], zero_streams: Iterable[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run the session on a batch of stream dicts; returns the raw outputs by name.

        ``zero_streams`` overrides the scanner's own set of streams fed as zeros (for the ablation).
        """
        zero = self.zero_streams if zero_streams is None else frozenset(zero_streams)
        outputs = self.session.run(self._output_names, self._feeds(batch, zero))
        return dict(zip(self._output_names, outputs, strict=True))

    def prepare(self, source: str | os.PathLike[str] | bytes) -> Prepared:
        """Read one file and extract its streams (no inference); errors land in ``result.error``."""
        return self._prepare(source)

    def infer(self, prepared: Sequence[Prepared], *, keep_arrays: bool = False) -> None:
        """Run batched inference on prepared files, filling in their results."""
        self._infer(prepared, keep_arrays=keep_arrays)

    def _infer(self, prepared: Sequence[Prepared], *, keep_arrays: bool = False) -> None:
        ready = [p for p in prepared if p.arrays is not None]
        if not ready:
            return
        t0 = time.perf_counter()
        out = self.run_model([p.arrays for p in ready])  # type: ignore[misc]
        per_file_ms = (time.perf_counter() - t0) * 1000 / len(ready)
        probs = np.asarray(out[OUTPUT_STEGO], dtype=np.float64).reshape(len(ready), -1)[:, 0]
        methods = np.asarray(out[OUTPUT_METHODS], dtype=np.float64).reshape(len(ready), len(METHODS))
        gates = out.get(OUTPUT_GATES)
        for i, p in enumerate(ready):
            r = p.result
            r.timings.inference_ms = per_file_ms
            r.probability = float(probs[i])
            r.method_probabilities = {m: float(methods[i, j]) for j, m in enumerate(METHODS)}
            r.is_stego = r.probability >= self.threshold
            r.method = METHODS[int(np.argmax(methods[i]))] if r.is_stego else None
            if gates is not None:
                r.explanation = {s: float(gates[i, j]) for j, s in enumerate(STREAM_NAMES)}
            if not keep_arrays:
                p.arrays = None  # free the planes early: batches of 256x256x4 add up

    # -- many files -----------------------------------------------------------------------------

    def scan_many(
        self,
        sources: Iterable[str | os.PathLike[str] | bytes],
        *,
        workers: int = 1,
        batch_size: int = DEFAULT_BATCH,
        executor: str = "auto",
        progress: Callable[[ScanResult], None] | None = None,
    ) -> list[ScanResult]:
        """Scan many files; results come back in input order, one per input.

        Args:
            sources: paths or bytes.
            workers: parallel workers (1 = in this thread); more than the CPUs this process may
                use (:func:`available_cpus`) only contend for them, so they are capped there, with a warning.
            batch_size: files per inference call (default 1: a batch makes each file wait for
                the others; ``v4runtime bench scan`` measures whether batching pays on this CPU).
            executor: ``"process"`` (one scanner, hence one session, per worker process; the pool
                is kept for later calls until :meth:`close`), ``"thread"`` (shares this scanner's
                session), or ``"auto"``: processes for ``workers > 1`` and at least
                :data:`AUTO_PROCESS_MIN_FILES` files, else threads. Stream extraction holds the GIL
                for much of its time, so threads barely scale; ``v4runtime bench scan`` measures both.
            progress: called with each result as it completes.

        Raises:
            ConfigError: ``workers`` or ``batch_size`` is not an integer of at least 1, or
                ``executor`` is not one of :data:`EXECUTORS`.
        """
        return list(
            self.iter_scan(
                sources, workers=workers, batch_size=batch_size, executor=executor, progress=progress
            )
        )

    def iter_scan(
        self,
        sources: Iterable[str | os.PathLike[str] | bytes],
        *,
        workers: int = 1,
        batch_size: int = DEFAULT_BATCH,
        executor: str = "auto",
        progress: Callable[[ScanResult], None] | None = None,
    ) -> Iterator[ScanResult]:
        """Like :meth:`scan_many`, yielding results in input order as batches complete.

        ``sources`` is read lazily, a little ahead of the results (a look-ahead of at least
        :data:`AUTO_PROCESS_MIN_FILES` sources, plus :data:`IN_FLIGHT_PER_WORKER` chunks per
        worker): a generator of bytes, even an endless one, is scanned in bounded memory.
        The arguments are checked at the call, before any source is read (see :meth:`scan_many`).
        """
        workers = _check_count("workers", workers)
        batch_size = _check_count("batch_size", batch_size)
        if executor not in EXECUTORS:
            raise ConfigError(f"executor must be one of {', '.join(map(repr, EXECUTORS))}, got {executor!r}")
        cpus = available_cpus()
        if workers > cpus:
            log.warning("%d workers asked for, but only %d CPU(s) available: using %d", workers, cpus, cpus)
            workers = cpus
        return self._iter_scan(iter(sources), workers, batch_size, executor, progress)

    def _iter_scan(
        self,
        sources: Iterator[str | os.PathLike[str] | bytes],
        workers: int,
        batch_size: int,
        executor: str,
        progress: Callable[[ScanResult], None] | None,
    ) -> Iterator[ScanResult]:
        # Sources are read lazily (a generator of bytes may be endless); a look-ahead sizes the
        # chunks of short inputs so that every worker still gets some.
        lookahead = max(workers * DISPATCH, AUTO_PROCESS_MIN_FILES)
        head = list(itertools.islice(sources, lookahead))
        exhausted = len(head) < lookahead
        per_worker = -(-len(head) // workers) if exhausted else DISPATCH  # ceil
        size = max(batch_size, min(DISPATCH, per_worker))
        chunks = _chunks(itertools.chain(head, sources), size, batch_size)
        if executor == "auto":
            executor = "process" if workers > 1 and len(head) >= AUTO_PROCESS_MIN_FILES else "thread"
        if workers <= 1 or (exhausted and len(head) <= size):
            results_iter: Iterable[list[ScanResult]] = map(self._scan_chunk, chunks)
        else:
            results_iter = self._pooled(chunks, workers, executor)
        for chunk_results in results_iter:
            for result in chunk_results:
                if progress is not None:
                    progress(result)
                yield result

    def _pooled(
        self, chunks: Iterator[_Chunk], workers: int, executor: str
    ) -> Iterator[list[ScanResult]]:
        """Chunk results in order, with at most :data:`IN_FLIGHT_PER_WORKER` chunks per worker submitted."""
        pending: collections.deque[_InFlight] = collections.deque()
        try:
            for chunk in chunks:
                pending.append(self._submit(chunk, workers, executor))
                if len(pending) >= IN_FLIGHT_PER_WORKER * workers:
                    yield self._first_results(pending, workers, executor)
            while pending:
                yield self._first_results(pending, workers, executor)
        finally:  # the caller stopped early (or a chunk failed): drop what has not started
            for item in pending:
                item.future.cancel()

    def _first_results(
        self, pending: collections.deque[_InFlight], workers: int, executor: str
    ) -> list[ScanResult]:
        """Wait for the first chunk in ``pending`` and pop its results, replacing a pool that broke."""
        while True:
            head = pending[0]
            try:
                results = head.future.result()
            except BrokenExecutor:
                self._resubmit_broken(pending, head.pool, workers, executor)
                continue
            pending.popleft()
            return results

    def _resubmit_broken(
        self, pending: collections.deque[_InFlight], pool: Executor | None, workers: int, executor: str,
    ) -> None:
        """Replace a broken pool; its unfinished chunks go to a new one, or come back as errors on their last try."""
        self._discard_pool(pool)
        retried = failed = 0
        for i, item in enumerate(pending):
            if item.pool is not pool or _finished(item.future):
                continue
            if item.tries < POOL_TRIES:
                pending[i] = self._submit(item.chunk, workers, executor, tries=item.tries + 1)
                retried += len(item.chunk[1])
            else:
                pending[i] = _InFlight(item.chunk, _done(_worker_died(item.chunk[1], item.tries)), None, item.tries)
                failed += len(item.chunk[1])
        log.warning("a worker process died (killed by a signal, out of memory, or a crash): %s",
                    _retry_summary(retried, failed))

    def _submit(self, chunk: _Chunk, workers: int, executor: str, tries: int = 1) -> _InFlight:
        # Under the lock, so that another call cannot swap the pool between getting and using it;
        # a pool swapped later still finishes the chunks already submitted to it.
        with self._pools_lock:
            pool: Executor
            if executor == "thread":
                pool = self._thread_pool(workers)
                task: Callable[[Any], list[ScanResult]] = self._scan_chunk
            else:
                pool = self._process_pool(workers)
                task = _worker_scan_chunk
            try:
                with signals_deferred():  # the first submit forks the workers: start them whole
                    future = pool.submit(task, chunk)
            except BrokenExecutor as exc:  # it broke since the last result: handled like a failed chunk
                future = Future()
                future.set_exception(exc)
        return _InFlight(chunk, future, pool, tries)

    def _discard_pool(self, pool: Executor | None) -> None:
        """Forget ``pool`` (unless another call replaced it already) and shut it down without waiting."""
        with self._pools_lock:
            for name in ("_threads", "_processes"):
                slot = getattr(self, name)
                if slot is not None and slot[1] is pool:
                    setattr(self, name, None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _thread_pool(self, workers: int) -> ThreadPoolExecutor:
        # A pool being replaced may still run another caller's chunks: it finishes them, then stops.
        if self._threads is None or self._threads[0] != workers:
            if self._threads is not None:
                self._threads[1].shutdown(wait=False)
            self._threads = (workers, ThreadPoolExecutor(max_workers=workers))
        return self._threads[1]

    def _process_pool(self, workers: int) -> ProcessPoolExecutor:
        # kept between calls: starting processes and their sessions costs about half a second
        if self._processes is None or self._processes[0] != workers:
            if self._processes is not None:
                self._processes[1].shutdown(wait=False)
            pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=_mp_context(),
                initializer=_worker_init,
                initargs=(str(self.model_path), self.threshold, tuple(self.zero_streams)),
            )
            self._processes = (workers, pool)
        return self._processes[1]

    def close(self) -> None:
        """Stop worker threads and processes started by :meth:`scan_many` (the session stays usable)."""
        with self._pools_lock:
            slots, self._threads, self._processes = (self._threads, self._processes), None, None
        for slot in slots:
            if slot is not None:
                slot[1].shutdown(cancel_futures=True)

    def __enter__(self) -> Scanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scan_chunk(self, task: tuple[int, Sequence[str | os.PathLike[str] | bytes]]) -> list[ScanResult]:
        batch_size, chunk = task
        results = []
        for i in range(0, len(chunk), batch_size):
            prepared = [self._prepare(source) for source in chunk[i : i + batch_size]]
            self._infer(prepared)
            results += [p.result for p in prepared]
        return results


#: A task for a pool: ``(batch_size, sources)``.
_Chunk = tuple[int, list[str | os.PathLike[str] | bytes]]


@dataclass
class _InFlight:
    """A chunk handed to ``pool`` (``None``: results made here), on its ``tries``-th try."""

    chunk: _Chunk
    future: Future[list[ScanResult]]
    pool: Executor | None
    tries: int = 1


def _finished(future: Future[Any]) -> bool:
    """``future`` holds results (not an error, not cancelled)."""
    return future.done() and not future.cancelled() and future.exception() is None


def _done(results: list[ScanResult]) -> Future[list[ScanResult]]:
    future: Future[list[ScanResult]] = Future()
    future.set_result(results)
    return future


def _worker_died(sources: Sequence[object], tries: int) -> list[ScanResult]:
    """Results for files that were never scanned because their worker process died on every try."""
    error = (f"not scanned: the worker process scanning this file's batch of {len(sources)} died {tries} times "
             "(killed by a signal, out of memory, or a crash in a decoder)")
    return [ScanResult(path=_display_path(source), error=error, error_reason="worker_died") for source in sources]


def _retry_summary(retried: int, failed: int) -> str:
    parts = [f"{retried} unfinished file(s) are scanned again in a new pool"] if retried else []
    parts += [f"{failed} file(s) reported as not scanned (worker_died)"] if failed else []
    return "; ".join(parts) or "nothing was left to scan"


def _display_path(source: object) -> str:
    """The ``path`` a :class:`ScanResult` shows for ``source`` (as :meth:`Scanner.scan` sets it)."""
    if isinstance(source, str | os.PathLike):
        return os.fsdecode(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    return f"<{type(source).__name__}>"


def _chunks(
    sources: Iterator[str | os.PathLike[str] | bytes], size: int, batch_size: int
) -> Iterator[_Chunk]:
    """``(batch_size, up to size sources)`` tasks, read from ``sources`` only as they are needed."""
    while chunk := list(itertools.islice(sources, size)):
        yield batch_size, chunk


def _check_threshold(value: object) -> float:
    """``value`` as a threshold in [0, 1] (``-0.0`` becomes ``0.0``); ConfigError otherwise (NaN included)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        threshold = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number within [0, 1], got {value!r}") from None
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be within [0, 1], got {threshold}")
    return threshold + 0.0


def _check_count(name: str, value: object) -> int:
    """``value`` if it is an integer of at least 1; ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be an integer of at least 1, got {value!r}")
    return int(value)


# -- process workers: one Scanner (one session) per worker process ----------------------------------


def _mp_context() -> multiprocessing.context.BaseContext:
    """``fork`` where available: workers start in milliseconds and, unlike ``spawn``, do not
    re-import the caller's ``__main__`` (scripts without a main guard, ``python -c``, notebooks).
    The parent's session uses one intra-op thread, so no onnxruntime thread pool is forked.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")

_WORKER_SCANNER: Scanner | None = None


def _worker_init(model_path: str, threshold: float, zero_streams: tuple[str, ...]) -> None:
    from v4runtime.workers import exit_with_parent, ignore_interrupts

    global _WORKER_SCANNER
    # Ctrl-C signals the terminal's whole process group: the parent stops the scan and shuts the
    # pool down; a worker interrupted on its own would only print a traceback.
    ignore_interrupts()
    exit_with_parent()
    _WORKER_SCANNER = Scanner(model=model_path, threshold=threshold, zero_streams=zero_streams)


def _worker_scan_chunk(task: tuple[int, Sequence[str | bytes]]) -> list[ScanResult]:
    assert _WORKER_SCANNER is not None, "worker not initialised"
    return _WORKER_SCANNER._scan_chunk(task)


__all__ = [
    "DEFAULT_THRESHOLD",
    "EXECUTORS",
    "ScanResult",
    "Scanner",
    "Timings",
    "create_session",
    "extract",
    "read_input",
]
