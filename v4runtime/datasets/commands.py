"""``v4runtime dataset build``: write a deterministic corpus and its manifest."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``dataset`` with the sub-command ``build``."""
    parser = subparsers.add_parser("dataset", help="build the image corpus (clean, hard negatives, stego)")
    sub = parser.add_subparsers(dest="dataset_command", metavar="COMMAND", required=True)
    build = sub.add_parser("build", help="write images and a JSONL manifest; same seed, same bytes")
    build.add_argument("--out", required=True, help="output directory")
    build.add_argument("--clean", type=int, required=True, help="number of clean images")
    build.add_argument("--stego", type=int, required=True, help="number of stego images")
    build.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    build.add_argument("--size", type=int, default=256, help="nominal image side in pixels (default 256)")
    build.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    bar = build.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show a progress bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")
    build.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    """Run ``dataset build`` and print a one-line summary."""
    from v4runtime.datasets.corpus import build_corpus

    summary = build_corpus(
        args.out, clean=args.clean, stego=args.stego, seed=args.seed, size=args.size,
        workers=args.workers, progress=args.progress,
    )
    total = summary.clean + summary.stego
    rate = total / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"wrote {total} images ({summary.clean} clean, {summary.stego} stego) to {summary.out} "
        f"in {summary.seconds:.1f} s ({rate:.0f} images/s); manifest {summary.manifest} "
        f"sha256 {summary.manifest_sha256}"
    )
    return 0
