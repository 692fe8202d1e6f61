"""``v4runtime quantize`` and ``v4runtime verify-quant``: thin wrappers over v4runtime.quantization."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from v4runtime.errors import QuantizationError
from v4runtime.files import check_output_file


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``quantize`` and ``verify-quant`` subcommands."""
    q = subparsers.add_parser(
        "quantize",
        help="quantise an FP32 detector to INT8 (static, QDQ, S8S8, per-channel)",
        description="Quantise an FP32 detector to INT8 with onnxruntime (pre-processing, then static "
        "QDQ quantisation calibrated on a folder mixing clean and stego images). The output is "
        "written atomically; on any error no output file is left behind.",
    )
    q.add_argument("--model", required=True, help="FP32 ONNX detector: a path or a shipped model's name (v4-default)")
    q.add_argument("--calibration", required=True, type=Path, help="folder of clean and stego images (with manifest.jsonl)")
    q.add_argument("--out", required=True, type=Path, help="INT8 ONNX file to write")
    q.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax", help="calibration method")
    q.add_argument(
        "--activations",
        choices=("s8", "u8", "s16"),
        default="s8",
        help="activation type: s8 (S8S8, default), u8 (U8S8, often faster on x86) or s16 (INT8 weights with "
        "16-bit activations, A16W8: near-float decisions, same file size, slower on CPU; opset 21)",
    )
    q.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True, help="per-channel weights (default on)")
    q.add_argument(
        "--reduce-range",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="7-bit weights (default: on only when this CPU has no VNNI)",
    )
    q.add_argument("--exclude-worst", type=int, default=0, metavar="K", help="keep the K lowest-SQNR layers in float and quantise again")
    q.add_argument("--exclude-node", action="append", default=[], metavar="NAME", help="keep this node in float (repeatable)")
    q.add_argument(
        "--float-head",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep the decision head (last layer to stego_probability) in float (default on)",
    )
    q.add_argument("--max-images", type=int, default=256, help="calibration images to use at most (default 256)")
    q.add_argument("--unlabelled-ok", action="store_true", help="accept a calibration folder without manifest.jsonl")
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.set_defaults(func=run_quantize)

    v = subparsers.add_parser(
        "verify-quant",
        help="the INT8 gate: compare FP32 and INT8 decisions, FPR, TPR, size and latency",
        description="Run the FP32 and INT8 detectors on the same labelled images and check decision "
        "agreement, ΔFPR and ΔTPR per method against tolerances. Exit status 0 when the gate passes, "
        "1 when it fails, 2 on bad input.",
    )
    v.add_argument("--fp32", required=True, help="FP32 ONNX detector: a path or a shipped model's name")
    v.add_argument("--int8", required=True, help="INT8 ONNX detector: a path or a model name")
    v.add_argument("--data", required=True, type=Path, help="folder of clean and stego images with manifest.jsonl")
    v.add_argument("--report", type=Path, help="write the JSON report here")
    v.add_argument("--markdown", type=Path, help="write a Markdown rendering of the report here")
    v.add_argument("--max-dfpr-pp", type=float, default=0.01, help="largest FPR increase in pp (default 0.01)")
    v.add_argument("--min-dtpr-pp", type=float, default=-0.1, help="smallest TPR change per method in pp (default -0.1)")
    v.add_argument("--min-agreement", type=float, default=99.9, help="smallest decision agreement in %% (default 99.9)")
    v.add_argument("--threshold", type=float, help="decision threshold (default: model card beside --fp32, else 0.5)")
    v.add_argument("--max-images", type=int, help="use at most this many images (default all)")
    v.add_argument("--repeats", type=int, default=3, help="timed runs per image and model (default 3)")
    v.add_argument("--worst", type=int, default=5, help="on failure, name this many lowest-SQNR layers (default 5)")
    v.set_defaults(func=run_verify)


def run_quantize(args: argparse.Namespace) -> int:
    """Run ``v4runtime quantize``."""
    from v4runtime.quantization import quantize_model

    result = quantize_model(
        args.model,
        args.calibration,
        args.out,
        method=args.method,
        activations=args.activations,
        per_channel=args.per_channel,
        reduce_range=args.reduce_range,
        exclude_nodes=args.exclude_node,
        exclude_worst=args.exclude_worst,
        float_head=args.float_head,
        max_images=args.max_images,
        allow_unlabelled=args.unlabelled_ok,
    )
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    s = result.settings
    print(f"wrote {result.output}")
    print(f"  size: FP32 {result.fp32_bytes:,} bytes -> INT8 {result.int8_bytes:,} bytes ({result.size_ratio:.2f}x smaller)")
    print(
        f"  settings: {s['format']} {s['activation_type']}/{s['weight_type']}, per-channel {s['per_channel']}, "
        f"reduce-range {s['reduce_range']}, calibration {s['calibration_method']} on {s['calibration_images']} images "
        f"({s['calibration_clean']} clean, {s['calibration_stego']} stego)"
    )
    if result.excluded_nodes:
        print(f"  kept in float: {', '.join(result.excluded_nodes)}")
    if result.card:
        print(f"  card: {result.card}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Run ``v4runtime verify-quant``; exit 1 when the gate fails."""
    from v4runtime.quantization import Tolerances, render_markdown, verify_quantization

    for flag, path in (("--report", args.report), ("--markdown", args.markdown)):
        if path is not None:
            check_output_file(path, flag, error=QuantizationError)  # before minutes of measuring, not after
    report = verify_quantization(
        args.fp32,
        args.int8,
        args.data,
        tolerances=Tolerances(args.max_dfpr_pp, args.min_dtpr_pp, args.min_agreement),
        threshold=args.threshold,
        max_images=args.max_images,
        repeats=args.repeats,
        worst_k=args.worst,
    )
    if args.report:
        report.write_json(args.report)
    text = render_markdown(report.as_dict())
    if args.markdown:
        try:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise QuantizationError(f"cannot write {args.markdown}: {exc.strerror or exc}") from None
    print(text, end="")
    if not report.passed:
        print("error: INT8 gate failed", file=sys.stderr)
        return 1
    return 0

