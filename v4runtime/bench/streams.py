"""Stream extraction throughput against plain Pillow decoding of the same files (one core).

The same in-memory files (photo crops and procedural images at ``--size``, in every format and
mode of the corpus, half of them carrying a payload) are decoded with Pillow
(``Image.open`` + ``load``) and passed through ``extract_streams``, in the same process, one
core, alternating rounds, timed in CPU seconds of this process; the best round of each is
reported to damp noise from other load on a shared machine.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from collections import defaultdict
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``v4runtime bench streams``."""
    parser.add_argument("--images", type=int, default=300, help="number of files (default 300)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; the best is reported (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated files (default 0)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--markdown", type=Path, help="also write a Markdown table to this file (for the docs)")


def make_files(count: int, size: int, seed: int) -> list[tuple[str, bytes]]:
    """Return ``count`` ``(format, bytes)`` files of exactly ``size`` x ``size`` pixels."""
    import numpy as np

    from v4runtime.datasets.corpus import CLEAN_PROFILES, _natural_alpha, _quantize, _save
    from v4runtime.datasets.procedural import KINDS, procedural
    from v4runtime.datasets.sources import photos, random_view
    from v4runtime.stego import embed, valid_combinations

    combos = valid_combinations()
    files: list[tuple[str, bytes]] = []
    for i in range(count):
        rng = np.random.default_rng([seed, 2, i])
        available = photos()
        if available and i % 3:
            cover = random_view(available[i % len(available)].image, rng, (size, size)).convert("RGB")
        else:
            cover = procedural(KINDS[i % len(KINDS)], rng, (size, size))
        if i % 2:
            method, fmt, order = combos[(i // 2) % len(combos)]
            if method == "alpha":
                cover = _natural_alpha(cover, rng)
            elif method == "palette" or fmt == "GIF":
                cover = _quantize(cover, rng)
            payload = rng.bytes(int(rng.integers(16, 1024)))
            files.append((fmt, embed(cover, payload, method, fmt, bit_order=order or "lsb-first")))
        else:
            fmt, mode = CLEAN_PROFILES[(i // 2) % len(CLEAN_PROFILES)]
            im = _natural_alpha(cover, rng) if mode == "RGBA" else (_quantize(cover, rng) if mode == "P" else cover.convert(mode))
            files.append((fmt, _save(im, fmt, rng)))
    return files


def _time(func, files: list[tuple[str, bytes]]) -> tuple[float, dict[str, float]]:
    """CPU time of this process (not wall time: on a shared machine, waiting for a core is not cost)."""
    per_format: dict[str, float] = defaultdict(float)
    start = time.process_time()
    for fmt, data in files:
        t0 = time.process_time()
        func(data)
        per_format[fmt] += time.process_time() - t0
    return time.process_time() - start, dict(per_format)


def measure(files: list[tuple[str, bytes]], rounds: int) -> dict[str, object]:
    """Time Pillow decoding and stream extraction of ``files``; best of ``rounds`` each."""
    if not files:
        from v4runtime.errors import ConfigError

        raise ConfigError("no files to time: a throughput of zero files means nothing")
    from PIL import Image

    from v4runtime.streams import extract_streams

    def decode(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as im:
            im.load()

    for fmt, data in files[:20]:  # warm caches and lazy imports
        decode(data)
        extract_streams(data)
        del fmt
    best_decode = best_extract = float("inf")
    fmt_decode: dict[str, float] = {}
    fmt_extract: dict[str, float] = {}
    for _ in range(max(1, rounds)):
        total, per = _time(decode, files)
        if total < best_decode:
            best_decode, fmt_decode = total, per
        total, per = _time(extract_streams, files)
        if total < best_extract:
            best_extract, fmt_extract = total, per
    counts: dict[str, int] = defaultdict(int)
    for fmt, _ in files:
        counts[fmt] += 1
    n = len(files)
    return {
        "images": n,
        "decode_images_per_s": n / best_decode,
        "extract_images_per_s": n / best_extract,
        "ratio_extract_over_decode": best_extract / best_decode,
        "per_format": {
            fmt: {
                "images": counts[fmt],
                "decode_ms": 1000 * fmt_decode[fmt] / counts[fmt],
                "extract_ms": 1000 * fmt_extract[fmt] / counts[fmt],
                "ratio": fmt_extract[fmt] / fmt_decode[fmt],
            }
            for fmt in sorted(counts)
        },
    }


def _markdown(result: dict[str, object], size: int) -> str:
    lines = [
        f"| {size}x{size} files, one core (CPU time) | Pillow decode | extract_streams | ratio (extract / decode) |",
        "|---|---:|---:|---:|",
        f"| all {result['images']} | {result['decode_images_per_s']:.0f} images/s | "
        f"{result['extract_images_per_s']:.0f} images/s | {result['ratio_extract_over_decode']:.2f}x |",
    ]
    for fmt, row in result["per_format"].items():  # type: ignore[union-attr]
        lines.append(
            f"| {fmt} ({row['images']} files) | {row['decode_ms']:.2f} ms | {row['extract_ms']:.2f} ms | {row['ratio']:.2f}x |"
        )
    if result.get("cpu"):
        lines += ["", f"Measured on {result['cpu']} ({result['cpu_vector']})."]
    return "\n".join(lines) + "\n"


def _cpu() -> dict[str, str]:
    """The CPU the figures were measured on, named as ``bench scan`` names it."""
    from v4runtime.bench.hosts import vector_extensions
    from v4runtime.quantization.host import cpu_name, host_features

    host = host_features()
    name = cpu_name(host.as_dict()) if host.cpu_model else (platform.processor() or platform.machine())
    return {"cpu": name, "cpu_vector": vector_extensions(host.flags)}


def _print(title: str, result: dict[str, object]) -> None:
    print(f"  {title}")
    print(f"    Pillow decode:    {result['decode_images_per_s']:8.0f} images/s")
    print(f"    extract_streams:  {result['extract_images_per_s']:8.0f} images/s")
    print(f"    ratio (time):     {result['ratio_extract_over_decode']:8.2f}x extraction / decode")
    for fmt, row in result["per_format"].items():  # type: ignore[union-attr]
        print(
            f"    {fmt:5s} ({row['images']:3d} files): decode {row['decode_ms']:6.2f} ms, "
            f"extract {row['extract_ms']:6.2f} ms, ratio {row['ratio']:5.2f}x"
        )


#: Smallest file count and image side a run accepts: fewer files give a throughput of noise, and the
#: largest payload (1,023 bytes, 1,028 framed) must fit a cover at one bit per pixel with room to spare.
MIN_IMAGES, MIN_SIZE, MAX_SIZE = 20, 128, 4096


def check_args(args: argparse.Namespace) -> None:
    """Reject options that would fail, or give meaningless figures, before any file is built."""
    from v4runtime.bench import check_output_file, require

    require(args.images >= MIN_IMAGES, f"--images must be at least {MIN_IMAGES}, got {args.images}")
    require(MIN_SIZE <= args.size <= MAX_SIZE, f"--size must be between {MIN_SIZE} and {MAX_SIZE}, got {args.size}")
    require(args.rounds >= 1, f"--rounds must be at least 1, got {args.rounds}")
    require(args.seed >= 0, f"--seed must be 0 or more, got {args.seed}")
    for option, path in (("--json", args.json), ("--markdown", args.markdown)):
        if path is not None:
            check_output_file(path, option)
    if args.json is not None and args.markdown is not None:
        require(args.json.resolve() != args.markdown.resolve(), "--json and --markdown name the same file")


def run(args: argparse.Namespace) -> int:
    """Build the files, time both paths, print the figures (and write them if asked)."""
    from v4runtime.bench import write_reports

    check_args(args)
    files = make_files(args.images, args.size, args.seed)
    print(
        f"stream extraction, {len(files)} files of {args.size}x{args.size}, one core, "
        f"CPU time, best of {args.rounds} rounds"
    )
    result = measure(files, args.rounds)
    _print("same files, same process", result)
    result.update(size=args.size, rounds=args.rounds, python=platform.python_version(), machine=platform.machine(),
                  **_cpu())
    outputs: dict[Path, str] = {}
    if args.json:
        outputs[args.json] = json.dumps(result, indent=2, sort_keys=True) + "\n"
    if args.markdown:
        outputs[args.markdown] = _markdown(result, args.size)
    write_reports(outputs)
    return 0
