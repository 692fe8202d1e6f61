"""Benchmarks behind ``v4runtime bench NAME``.

Each benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> int``. Benchmarks print
figures with a baseline measured in the same run; they are never timed tests.
"""

from __future__ import annotations

import argparse
import importlib

#: Benchmark name -> module implementing it.
BENCHMARKS: dict[str, str] = {
    "streams": "v4runtime.bench.streams",
    "scan": "v4runtime.bench.scan",
    "monitor": "v4runtime.bench.monitor",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``v4runtime bench`` and one sub-command per benchmark."""
    parser = subparsers.add_parser("bench", help="run a benchmark and print its figures")
    bench_sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, module_name in BENCHMARKS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # pragma: no cover - only while a benchmark is being built
            if exc.name != module_name:
                raise
            continue
        sub = bench_sub.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
