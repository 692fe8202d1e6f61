"""End-to-end scan latency (read, decode + streams, inference) and throughput, beside plain decoding.

Writes real 256x256 image files (photo crops from scikit-image and procedural images, in PNG, JPEG,
GIF, WebP and BMP) to a temporary folder, then measures in one run:

1. plain Pillow decoding of each file (read + open + load): the baseline;
2. single-threaded end-to-end latency per file, one file per call (batch 1), with its stages, in
   rounds (the median round is reported, every round's p95 beside it);
3. throughput of ``Scanner.scan_many`` with 1 and N workers, threads and processes.

Figures are printed and written as JSON and Markdown (``bench-scan.json``/``.md``, the targets alone in
``bench-scan-targets.md``) for the docs, and the run takes its CPU's row in the record of every CPU
measured (:mod:`v4runtime.bench.hosts`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Default output folder for the generated report (relative to the current directory).
DEFAULT_OUT = "docs/generated/eval"
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
#: Rounds of the latency pass and of each throughput configuration; the median is reported.
ROUNDS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``v4runtime bench scan``."""
    parser.add_argument("--images", type=int, default=300, help="number of 256x256 files (default 300)")
    parser.add_argument("--workers", type=int, default=2, help="workers for the throughput run (default 2)")
    parser.add_argument("--model", default=None, help="model name or .onnx path (default v4-default)")
    parser.add_argument("--out-dir", default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT})")
    parser.add_argument("--no-write", action="store_true", help="print only; write no report files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated images")


def make_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Write ``count`` 256x256 images (photo crops and procedural, all five formats) into ``folder``."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    paths = []
    for i in range(count):
        kind = i % 3
        if kind < 2:
            photo = photos[int(rng.integers(len(photos)))]
            y = int(rng.integers(0, photo.shape[0] - 256 + 1))
            x = int(rng.integers(0, photo.shape[1] - 256 + 1))
            arr = np.ascontiguousarray(photo[y : y + 256, x : x + 256, :3])
        else:
            yy, xx = np.mgrid[0:256, 0:256]
            base = (xx * rng.uniform(0.3, 1) + yy * rng.uniform(0.3, 1)) % 256
            noise = rng.normal(0, rng.uniform(1, 12), (256, 256, 3))
            arr = np.clip(base[..., None] + noise, 0, 255).astype(np.uint8)
        fmt = FORMATS[i % len(FORMATS)]
        im = Image.fromarray(arr, "RGB")
        if fmt == "GIF":
            im = im.quantize(256)
        buf = io.BytesIO()
        im.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {"lossless": True, "method": 0} if fmt == "WEBP" else {}))
        path = folder / f"img-{i:04d}.{fmt.lower()}"
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths


def _decode_ms(paths: list[Path]) -> list[float]:
    from PIL import Image

    out = []
    for p in paths:
        t0 = time.perf_counter()
        with Image.open(io.BytesIO(p.read_bytes())) as im:
            im.load()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _throughput(scanner: Any, paths: list[Path], workers: int, executor: str, batch_size: int = 1) -> float:
    t0 = time.perf_counter()
    results = scanner.scan_many([str(p) for p in paths], workers=workers, batch_size=batch_size,
                                executor=executor)
    elapsed = time.perf_counter() - t0
    bad = [r for r in results if r.error]
    if bad:
        raise RuntimeError(f"benchmark image unreadable: {bad[0].path}: {bad[0].error}")
    return len(paths) / elapsed


def _latency_round(scanner: Any, paths: list[Path]) -> dict[str, Any]:
    """One single-threaded pass over ``paths``: percentiles per stage, and the CPU time of each file."""
    from v4runtime.evaluation import percentiles

    stages: dict[str, list[float]] = {"read_ms": [], "streams_ms": [], "inference_ms": [], "total_ms": []}
    cpu: list[float] = []
    for p in paths:
        c0 = time.process_time()
        r = scanner.scan(p)
        cpu.append((time.process_time() - c0) * 1000)  # CPU time: waiting for a core does not count
        if r.error:
            raise RuntimeError(f"benchmark image unreadable: {p}: {r.error}")
        for key in ("read_ms", "streams_ms", "inference_ms", "total_ms"):
            stages[key].append(getattr(r.timings, key))
    return {**{k: percentiles(v) for k, v in stages.items()}, "cpu_ms": percentiles(cpu), "cpu_samples": cpu}


def _skipping_gain(scanner: Any, paths: list[Path]) -> dict[str, Any]:
    """Inference alone on each file's streams: the scanner's session, which skips the encoders of
    all-zero streams, against a session that runs every encoder (the baseline), interleaved."""
    from v4runtime.evaluation import percentiles
    from v4runtime.model.empty_streams import EMPTY_WHEN_ABSENT
    from v4runtime.scanner import create_session
    from v4runtime.streams.spec import stack_inputs

    baseline = create_session(scanner.model_path, intra_op_threads=1, skip_empty_streams=False)
    times: dict[str, list[float]] = {"every_encoder_ms": [], "skipping_ms": []}
    empty = 0
    for p in paths:
        feeds = stack_inputs([scanner.prepare(p).arrays])
        empty += int(any(not feeds[name].any() for name in EMPTY_WHEN_ABSENT))
        for key, session in (("every_encoder_ms", baseline), ("skipping_ms", scanner.session)):
            t0 = time.perf_counter()
            session.run(None, feeds)
            times[key].append((time.perf_counter() - t0) * 1000)
    result: dict[str, Any] = {key: percentiles(values) for key, values in times.items()}
    result["files_with_an_empty_stream"] = empty
    result["speedup_p50"] = result["every_encoder_ms"]["p50"] / result["skipping_ms"]["p50"]
    return result


def measure(paths: list[Path], model: str | None, workers: int) -> dict[str, Any]:
    """Run the three measurements on ``paths``; returns the report dict."""
    from v4runtime.quantization.host import host_features
    from v4runtime.scanner import Scanner

    load_start = os.getloadavg()[0]
    host = host_features()
    scanner = Scanner(model=model, intra_op_threads=1)
    try:
        return _measure(scanner, paths, workers, host, load_start)
    finally:
        scanner.close()  # worker pools, also when a measurement fails or is interrupted


def _measure(scanner: Any, paths: list[Path], workers: int, host: Any, load_start: float) -> dict[str, Any]:
    from v4runtime.evaluation import percentiles
    from v4runtime.scanner import available_cpus

    requested, workers = workers, min(workers, available_cpus())  # the scanner caps pools there too
    for p in paths[:10]:  # warm-up: page cache, onnxruntime's first-run allocations
        scanner.scan(p)
    _decode_ms(paths[:10])
    decode = _decode_ms(paths)
    # Latency in rounds: a burst of load from elsewhere during one pass moves that round's p95 only.
    latency_rounds = [_latency_round(scanner, paths) for _ in range(ROUNDS)]
    latency = sorted(latency_rounds, key=lambda r: r["total_ms"]["p95"])[ROUNDS // 2]  # the median round
    cpu = latency.pop("cpu_samples")
    skipping = _skipping_gain(scanner, paths)
    cpu_rate = 1000 / float(np.mean(cpu))
    decode_p = percentiles(decode)
    plural = "worker" if workers == 1 else "workers"
    configs = {
        "1 worker": (1, "thread", 1),
        "1 worker, batches of 8": (1, "thread", 8),
        f"{workers} {plural} (threads)": (workers, "thread", 1),
        f"{workers} {plural} (processes)": (workers, "process", 1),
    }
    t0 = time.perf_counter()
    _throughput(scanner, paths[: 16 * workers], workers, "process")  # start the pools outside the clock
    pool_start = time.perf_counter() - t0  # cold: forking workers, each loading the model once
    _throughput(scanner, paths[: 16 * workers], workers, "thread")
    # rounds interleave the configurations, so a burst of load from elsewhere hits all of them alike
    rounds: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(ROUNDS):
        for name, (n, executor, batch) in configs.items():
            rounds[name].append(_throughput(scanner, paths, n, executor, batch_size=batch))
    throughput = {name: float(np.median(values)) for name, values in rounds.items()}
    decode_rate = 1000 / float(np.mean(decode))
    return {
        "recorded": dt.datetime.now(dt.UTC).date().isoformat(),
        "images": len(paths),
        "size": "256x256",
        "formats": list(FORMATS),
        "model": scanner.model_name,
        "model_sha256": scanner.model_sha256,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.machine(),
                    "cpu_model": host.cpu_model, "cpu_id": host.cpu_id, "cpu_flags": list(host.flags),
                    "load_average_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)]},
        "latency_ms": latency,
        "latency_rounds_p95_ms": [r["total_ms"]["p95"] for r in latency_rounds],
        "decode_ms": decode_p,
        "decode_images_per_s_1_thread": decode_rate,
        "cpu_bound_images_per_s_per_core": cpu_rate,
        "ratio_total_to_decode_p50": latency["total_ms"]["p50"] / decode_p["p50"],
        "inference_skipping": skipping,
        "throughput_images_per_s": throughput,
        "throughput_rounds": rounds,
        "pool_start_s": pool_start,
        "workers_requested": requested,
        "workers_used": workers,
        "targets": {"p95_ms": 5.0, "throughput_images_per_s": 400.0},
    }


def render(report: dict[str, Any]) -> str:
    """The Markdown table the performance page includes."""
    lat, dec = report["latency_ms"], report["decode_ms"]
    lines = [
        f"{report['images']} files of {report['size']} ({', '.join(report['formats'])}), model "
        f"`{report['model']}` (sha256 `{report['model_sha256'][:12]}…`), {report['machine']['cpus']} CPUs"
        + _cpu_note(report["machine"])
        + f", command `v4runtime bench scan --images {report['images']}`."
        + _load_note(report["machine"].get("load_average_1min")),
        "",
        f"| single-threaded, one file per call (the median of {ROUNDS} rounds) | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|",
        f"| plain decode (Pillow, baseline) | {dec['p50']:.2f} | {dec['p95']:.2f} | {dec['p99']:.2f} |",
    ]
    names = {"read_ms": "read", "streams_ms": "decode + streams", "inference_ms": "inference",
             "total_ms": "**end to end**", "cpu_ms": "end to end, CPU time (time spent waiting for a core left out)"}
    for key, label in names.items():
        if key not in lat:
            continue
        p = lat[key]
        lines.append(f"| {label} | {p['p50']:.2f} | {p['p95']:.2f} | {p['p99']:.2f} |")
    lines += [
        "",
        f"End to end is {report['ratio_total_to_decode_p50']:.1f}x plain decoding at p50 "
        f"(target p95 <= {report['targets']['p95_ms']:g} ms)." + _latency_rounds_note(report),
        "",
        *_skipping_lines(report),
        f"| throughput (scan_many, one file per inference call unless noted; median of {ROUNDS} rounds) | images/s |",
        "|---|---:|",
        f"| plain decode, 1 thread (baseline) | {report['decode_images_per_s_1_thread']:.0f} |",
    ]
    for key, value in report["throughput_images_per_s"].items():
        lines.append(f"| scan, {key} | {value:.0f} |")
    lines += _batching_lines(report)
    if report.get("workers_used", 0) < report.get("workers_requested", 0):
        lines.append(f"\n{report['workers_requested']} workers were asked for, but this process may run on "
                     f"{report['workers_used']} CPU(s) only: the rows measure {report['workers_used']}.")
    lines.append(f"\nWorker pools are started before the clock; starting {report.get('pool_start_s', 0):.2f} s "
                 "cold (processes forked, each loading the model once), once per scanner.")
    if "cpu_bound_images_per_s_per_core" in report:
        lines.append(f"CPU time per file bounds what one free core can do: "
                     f"{report['cpu_bound_images_per_s_per_core']:.0f} images/s per core (1000 / mean CPU ms).")
    lines.append(f"Target: >= {report['targets']['throughput_images_per_s']:g} images/s with 2 workers.")
    return "\n".join(lines) + "\n"


def render_targets(report: dict[str, Any]) -> str:
    """The targets alone (``bench-scan-targets.md``), for pages that state them without the figures."""
    targets = report["targets"]
    return (f"Targets of `v4runtime bench scan` on the host: end-to-end latency p95 <= {targets['p95_ms']:g} ms "
            "per file (single-threaded, one file per call), and throughput >= "
            f"{targets['throughput_images_per_s']:g} images/s with 2 workers.\n")


def _latency_rounds_note(report: dict[str, Any]) -> str:
    """The end-to-end p95 of every round, so a verdict near the target shows how near it is."""
    rounds = report.get("latency_rounds_p95_ms")
    if not rounds:
        return ""
    target = report["targets"]["p95_ms"]
    met = sum(p95 <= target for p95 in rounds)
    shown = ", ".join(f"{p95:.2f}" for p95 in rounds)
    return (f" End-to-end p95 in the {len(rounds)} rounds: {shown} ms ({met} of {len(rounds)} within the "
            "target); the table shows the round with the median p95.")


def _batching_lines(report: dict[str, Any]) -> list[str]:
    """Whether batching paid in this run: the ratio per round, so run-to-run noise shows beside it."""
    rounds = report.get("throughput_rounds") or {}
    single, batched = rounds.get("1 worker"), rounds.get("1 worker, batches of 8")
    if not single or not batched:
        return []
    ratios = [b / s for s, b in zip(single, batched, strict=True)]
    verdict = "faster" if min(ratios) > 1 else "slower" if max(ratios) < 1 else "neither faster nor slower in every round"
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    return [f"\nBatches of 8 against one file per call, 1 worker: {shown}x in the {len(ratios)} rounds ({verdict})."]


def _skipping_lines(report: dict[str, Any]) -> list[str]:
    skip = report.get("inference_skipping")
    if not skip:
        return []
    rows = (("every stream encoder run (baseline)", skip["every_encoder_ms"]),
            ("encoders of all-zero streams skipped (what scans run)", skip["skipping_ms"]))
    return [
        "| inference alone, same files, interleaved | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|",
        *(f"| {label} | {p['p50']:.2f} | {p['p95']:.2f} | {p['p99']:.2f} |" for label, p in rows),
        "",
        f"Skipping the encoders of all-zero streams makes inference {skip['speedup_p50']:.2f}x as fast at p50 "
        f"({skip['files_with_an_empty_stream']} of {report['images']} files have at least one such stream: "
        "no transparency, no palette, or no EXIF and tail).",
        "",
    ]


def _cpu_note(machine: dict[str, Any]) -> str:
    """Name the CPU and its vector extensions: inference time depends on them more than on the clock."""
    if not machine.get("cpu_model"):
        return ""
    from v4runtime.bench.hosts import vector_extensions
    from v4runtime.quantization.host import cpu_name  # late: the package imports onnxruntime's quantiser

    return f" ({cpu_name(machine)}, {vector_extensions(machine.get('cpu_flags') or [])})"


def _load_note(load: list[float] | None) -> str:
    if not load:
        return ""
    return (f" The machine's 1-minute load average was {load[0]:.1f} at the start and {load[1]:.1f} at the end: "
            "figures from a busy shared machine are lower bounds of what an idle one gives.")


def max_workers() -> int:
    """Most workers a run may ask for: one per core (at least 2, the target's configuration).

    Each process worker loads its own model; more workers than cores measure nothing more and can
    exhaust the machine's memory.
    """
    return max(2, os.cpu_count() or 1)


def check_args(args: argparse.Namespace) -> None:
    """Reject options that would fail, or give meaningless figures, before any file is generated."""
    from v4runtime.bench import check_output_dir, require

    require(args.images >= 20, f"--images must be at least 20 (10 are used to warm up), got {args.images}")
    require(1 <= args.workers <= max_workers(),
            f"--workers must be between 1 and {max_workers()} (one per core), got {args.workers}")
    require(args.seed >= 0, f"--seed must be 0 or more, got {args.seed}")
    if not args.no_write:
        check_output_dir(args.out_dir, "--out-dir")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``v4runtime bench scan``."""
    from v4runtime.bench import hosts, write_reports

    check_args(args)
    record = [] if args.no_write else hosts.read_record(Path(args.out_dir) / hosts.RECORD_JSON)  # refuse early
    with tempfile.TemporaryDirectory(prefix="v4-bench-scan-") as tmp:
        paths = make_images(Path(tmp), args.images, args.seed)
        report = measure(paths, args.model, args.workers)
    text = render(report)
    print(text, end="")
    if not args.no_write:
        out = Path(args.out_dir)
        record = hosts.updated(record, hosts.row_from_report(report))
        write_reports({
            out / "bench-scan.json": json.dumps(report, indent=2) + "\n",
            out / "bench-scan.md": text,
            out / "bench-scan-targets.md": render_targets(report),
            out / hosts.RECORD_JSON: hosts.dump_record(record),
            out / hosts.RECORD_MARKDOWN: hosts.render_record(record),
        })
        print(f"wrote {out / 'bench-scan.json'} and {out / 'bench-scan.md'}; "
              f"{out / hosts.RECORD_MARKDOWN} holds {len(record)} CPU(s)")
    return 0
