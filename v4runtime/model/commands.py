"""CLI commands of the model area: ``v4runtime train``, ``v4runtime model-card`` and ``v4runtime calibrate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from v4runtime.errors import ConfigError, V4Error

if TYPE_CHECKING:
    from v4runtime.model.card import ModelCard


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``model-card`` to the CLI."""
    p = subparsers.add_parser("train", help="train the detector on a corpus and export it to ONNX",
                              description="Train the 8-stream detector on a corpus built by `v4runtime dataset "
                              "build`, export it to ONNX, check parity and write its model card.")
    p.add_argument("--data", required=True, help="corpus directory (with manifest.jsonl)")
    p.add_argument("--out", required=True, help="where to write the ONNX model (card goes beside it)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--workers", type=int, default=1, help="processes for stream extraction")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads (fixed for reproducibility)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--clean-weight", type=float, default=2.0,
                   help="extra loss weight of clean images after class balancing (false positives cost more)")
    p.add_argument("--unsignalled-weight", type=float, default=1.0,
                   help="loss weight of stego images with a random, unmarked payload in a bit-plane method")
    p.add_argument("--structured-z", type=float, default=None, metavar="Z",
                   help="unsignalled payloads that overwrote at least Z of LSB structure (manifest cover_lsb_z) "
                        "get --structured-weight instead")
    p.add_argument("--structured-weight", type=float, default=1.0, metavar="W",
                   help="loss weight of those payloads (with --structured-z)")
    p.add_argument("--stream-dropout", type=float, default=0.0,
                   help="probability of blanking the content and meta streams of a training sample")
    p.add_argument("--label-smoothing", type=float, default=0.01, metavar="EPS",
                   help="smooth the targets to EPS/2 and 1-EPS/2: bounded logits, INT8-friendly activations")
    p.add_argument("--build-clean", type=int, default=None, metavar="N",
                   help="first build the corpus in --data with `dataset build` (N clean images; timed and recorded)")
    p.add_argument("--build-stego", type=int, default=None, metavar="N", help="stego images of that corpus")
    p.add_argument("--build-seed", type=int, default=None, metavar="S", help="seed of that corpus")
    p.add_argument("--name", default=None, help="model name in the card (default: file name)")
    p.add_argument("--report", default=None, help="also write the training summary as JSON here")
    p.set_defaults(func=_train)

    c = subparsers.add_parser("model-card", help="show a model's card, or render it as Markdown",
                              description="Verify a model (sha256, signature) and print its card as JSON, "
                              "or write the Markdown rendering the docs include.")
    c.add_argument("--model", default=None, help="shipped model name or path (default v4-default)")
    c.add_argument("--markdown", default=None, metavar="PATH", help="write the Markdown rendering to PATH")
    c.add_argument("--docs", default=None, metavar="DIR",
                   help="write card.md, architecture.md and training.md (the docs' generated fragments) to DIR")
    c.add_argument("--reproduction", default=None, metavar="REPORT",
                   help="compare a training report (train --report) with the model: exit 0 when it gave the "
                   "same file, 1 when not; with --docs also add the run to DIR/reproductions.json and .md")
    c.set_defaults(func=_card)

    k = subparsers.add_parser(
        "calibrate",
        help="choose a model's decision threshold on a separate corpus and record it in its card",
        description="Scan a corpus the model never trained on (built with its own seed; never the held-out "
        "evaluation corpus) and choose the lowest threshold whose false-positive rate on its clean files is "
        "within --target-fpr. Prints the choice; --write stores it in the model card.",
    )
    k.add_argument("--data", required=True, metavar="DIR", help="calibration corpus (with manifest.jsonl)")
    k.add_argument("--model", default=None, metavar="NAME|PATH", help="shipped model name or .onnx path")
    k.add_argument("--target-fpr", type=float, default=None, metavar="RATE",
                   help="largest false-positive rate allowed on the corpus' clean files (default 0.0002)")
    k.add_argument("--floor", type=float, default=None, metavar="T",
                   help="never go below this threshold (default 0.5)")
    k.add_argument("--workers", type=int, default=1, metavar="N", help="scanner worker processes (default 1)")
    k.add_argument("--write", action="store_true", help="set the card's threshold and record the calibration")
    k.set_defaults(func=_calibrate)


def _train(args: argparse.Namespace) -> int:
    try:
        from v4runtime.model.training import TrainConfig, run
    except ModuleNotFoundError as exc:
        if exc.name == "torch":
            raise ConfigError("training needs PyTorch: pip install 'v4runtime[train]'") from None
        raise
    config = TrainConfig(epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
                         val_fraction=args.val_fraction, workers=args.workers, threads=args.threads, lr=args.lr,
                         clean_weight=args.clean_weight, unsignalled_weight=args.unsignalled_weight,
                         structured_z=args.structured_z, structured_weight=args.structured_weight,
                         stream_dropout=args.stream_dropout, label_smoothing=args.label_smoothing)
    argv = [a for a in sys.argv[1:]] if Path(sys.argv[0]).name.startswith("v4runtime") else None
    build = None
    if args.build_clean is not None or args.build_stego is not None:
        if args.build_clean is None or args.build_stego is None or args.build_seed is None:
            raise ConfigError("--build-clean, --build-stego and --build-seed go together")
        build = {"clean": args.build_clean, "stego": args.build_stego, "seed": args.build_seed}
    run(args.data, args.out, config, name=args.name, report=args.report, argv=argv, build=build)
    return 0


def _card(args: argparse.Namespace) -> int:
    from v4runtime.model.card import render_markdown
    from v4runtime.model.registry import resolve_model

    resolved = resolve_model(args.model)
    report = _read_report(args.reproduction) if args.reproduction else None  # bad input fails before any write
    if args.docs:
        from v4runtime.model.report import write_docs

        try:
            written = write_docs(resolved.path, resolved.card, args.docs)
        except OSError as exc:
            raise ConfigError(f"cannot write the docs fragments to {args.docs}: {exc.strerror or exc}") from None
        for path in written:
            print(f"wrote {path}")
    if args.markdown:
        try:
            Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
            Path(args.markdown).write_text(render_markdown(resolved.card), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.markdown}: {exc.strerror or exc}") from None
        print(f"wrote {args.markdown}")
    if report is not None:
        return _reproduction(report, resolved.card, args.docs)
    if not (args.markdown or args.docs):
        print(resolved.card.model_dump_json(indent=2))
    return 0


def _read_report(report_path: str) -> dict:
    """A training report (``train --report``), read without blocking on a pipe."""
    from v4runtime.model.card import read_text_file

    try:
        report = json.loads(read_text_file(report_path))
    except (V4Error, ValueError) as exc:  # ValueError: not UTF-8, not JSON
        raise ConfigError(f"cannot read the training report {report_path}: {exc}") from None
    if not isinstance(report, dict) or "sha256" not in report:
        raise ConfigError(f"{report_path} is not a training report (v4runtime train --report): no sha256")
    return report


def _reproduction(report: dict, card: ModelCard, docs: str | None) -> int:
    from v4runtime.model.reproduction import add_to_record, compare, describe

    rep = compare(report, card)
    print(describe(rep))
    if docs:
        for path in add_to_record(rep, docs):
            print(f"wrote {path}")
    return 0 if rep.same_model else 1


def _calibrate(args: argparse.Namespace) -> int:
    import shlex

    from v4runtime.model.calibration import DEFAULT_TARGET_FPR, calibrate, write_calibration

    target = DEFAULT_TARGET_FPR if args.target_fpr is None else args.target_fpr
    result = calibrate(args.model, args.data, target_fpr=target, workers=args.workers, floor=args.floor)
    tpr = "n/a" if result.tpr is None else f"{100 * result.tpr:.2f}%"
    print(f"threshold {result.threshold:.6f} (floor {result.floor:.4f}, target FPR {100 * target:.3f}%)")
    print(f"clean {result.clean}: {result.false_positives} at or above it (FPR {100 * result.fpr:.3f}%)")
    print(f"stego {result.stego}: TPR {tpr}; unreadable {result.unreadable}")
    if args.write:
        argv = sys.argv[1:] if sys.argv[1:2] == ["calibrate"] else ["calibrate", "--data", str(args.data)]
        path = write_calibration(args.model, result, "v4runtime " + " ".join(shlex.quote(a) for a in argv))
        print(f"updated {path}")
    return 0
