"""Training of the detector (PyTorch; needs the ``train`` extra).

Multi-objective loss: class-balanced binary cross-entropy for "is stego" on every sample, plus
cross-entropy of the capability-masked method logits on stego samples. Seeded and reproducible:
``torch.manual_seed``, deterministic algorithms, a fixed thread count and a numpy generator
drive initialisation, the split and the batch order. After each epoch the validation FPR and
TPR are printed; at the end the decision threshold is calibrated on the validation clean images.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from v4runtime.errors import ConfigError
from v4runtime.files import check_output_file
from v4runtime.model.architecture import V4Detector, parameter_count
from v4runtime.model.calibration import choose_threshold
from v4runtime.model.data import StreamSet, load_corpus, split
from v4runtime.model.memory import check_fits
from v4runtime.model.progress import Progress
from v4runtime.streams.spec import METHODS, STREAM_NAMES

#: Streams that stream dropout may blank during training (never ``format``: it holds the capability mask).
DROPPABLE_STREAMS = ("content", "meta")
#: Threshold used during training and whenever validation gives no reason to move it.
DEFAULT_THRESHOLD = 0.5
#: Highest threshold calibration may choose (beyond it TPR would collapse first).
MAX_THRESHOLD = 0.995


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (all recorded in the model card)."""

    epochs: int = 8
    seed: int = 0
    batch_size: int = 32
    val_fraction: float = 0.15
    workers: int = 1
    threads: int = 1
    lr: float = 3e-3
    weight_decay: float = 1e-4
    method_weight: float = 0.5
    clean_weight: float = 2.0  # extra weight on clean samples: false positives cost more than misses
    #: Weight of stego samples whose payload leaves no first-order trace (random bytes, no marker, in a
    #: bit-plane method): near-indistinguishable from clean noise, they would teach the model to flag
    #: noisy clean files; they stay in the corpus but count less.
    unsignalled_weight: float = 1.0
    #: Unsignalled payloads that overwrote at least this much LSB structure in their cover (manifest
    #: ``cover_lsb_z``, see :mod:`v4runtime.datasets.detectability`) left a trace a detector can
    #: find: they get ``structured_weight`` instead. ``None``: every unsignalled payload gets
    #: ``unsignalled_weight``.
    structured_z: float | None = None
    structured_weight: float = 1.0
    #: Probability of zeroing each of :data:`DROPPABLE_STREAMS` for a training sample, so the plane
    #: encoders must learn to decide without the dominant feature streams (0 disables).
    stream_dropout: float = 0.0
    #: Targets become ``eps/2`` and ``1 - eps/2`` (and the method targets are smoothed alike): logits
    #: stay finite instead of growing without bound on easy files, which keeps activations in a range
    #: INT8 can represent and leaves room between clean and stego scores for the threshold.
    label_smoothing: float = 0.01


@dataclass
class Scores:
    """Validation figures at one threshold."""

    threshold: float
    fpr: float
    tpr: float
    tpr_by_method: dict[str, float]
    method_accuracy: float
    clean: int
    stego: int


@dataclass
class TrainResult:
    """A trained model, its calibrated threshold and the per-epoch history."""

    model: V4Detector
    threshold: float
    history: list[dict[str, Any]] = field(default_factory=list)
    final: Scores | None = None


def check_config(config: TrainConfig) -> None:
    """Refuse hyper-parameters no run can use, before any corpus is read.

    Raises:
        ConfigError: naming the first bad option.
    """
    def finite(value: float) -> bool:
        return math.isfinite(value)

    rules: list[tuple[bool, str]] = [
        (config.epochs >= 1, f"--epochs must be at least 1, got {config.epochs}"),
        (config.batch_size >= 1, f"--batch-size must be at least 1, got {config.batch_size}"),
        (config.seed >= 0, f"--seed must be >= 0, got {config.seed}"),
        (config.workers >= 1, f"--workers must be at least 1, got {config.workers}"),
        (config.threads >= 1, f"--threads must be at least 1, got {config.threads}"),
        (0.0 < config.val_fraction < 1.0, f"--val-fraction must be between 0 and 1, got {config.val_fraction}"),
        (finite(config.lr) and config.lr > 0, f"--lr must be a positive number, got {config.lr}"),
        (finite(config.clean_weight) and config.clean_weight > 0,
         f"--clean-weight must be a positive number, got {config.clean_weight}"),
        (finite(config.unsignalled_weight) and config.unsignalled_weight >= 0,
         f"--unsignalled-weight must be >= 0, got {config.unsignalled_weight}"),
        (finite(config.structured_weight) and config.structured_weight >= 0,
         f"--structured-weight must be >= 0, got {config.structured_weight}"),
        (config.structured_z is None or finite(config.structured_z),
         f"--structured-z must be a number, got {config.structured_z}"),
        (0.0 <= config.stream_dropout < 1.0, f"--stream-dropout must be in [0, 1), got {config.stream_dropout}"),
        (0.0 <= config.label_smoothing < 1.0, f"--label-smoothing must be in [0, 1), got {config.label_smoothing}"),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)


def _print(message: str) -> None:
    print(message, flush=True)  # flushed: progress must show up in piped CI logs as it happens


def seed_everything(seed: int, threads: int) -> None:
    """Make a run reproducible: seeds, deterministic kernels, a fixed number of threads."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, threads))


_SCALE = float(np.float32(1.0 / 255.0))


def _tensors(streams: StreamSet, index: np.ndarray) -> list[torch.Tensor]:
    """Float32 input tensors for the rows in ``index`` (uint8 codes scaled in torch: 3x faster than
    numpy's mixed-type multiply, and the same float32 products)."""
    out = []
    for name in STREAM_NAMES:
        rows = torch.from_numpy(streams.arrays[name][index])
        out.append(rows.float().mul_(_SCALE) if rows.dtype == torch.uint8 else rows.float())
    return out


def fit_feature_stats(model: V4Detector, streams: StreamSet, index: np.ndarray) -> None:
    """Standardise the vector streams with statistics of the training rows only."""
    for name in ("format", "content"):
        values = streams.arrays[name][index].astype(np.float64)
        model.set_feature_stats(name, torch.tensor(values.mean(0), dtype=torch.float32),
                                torch.tensor(values.std(0), dtype=torch.float32))


@torch.no_grad()
def predict(model: V4Detector, streams: StreamSet, index: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Stego probabilities (n,) and method probabilities (n, 5) of the rows in ``index``."""
    model.eval()
    probs, methods = [], []
    for start in range(0, len(index), batch_size):
        p, m, _ = model(*_tensors(streams, index[start:start + batch_size]))
        probs.append(p.numpy())
        methods.append(m.numpy())
    if not probs:
        return np.zeros(0, np.float32), np.zeros((0, len(METHODS)), np.float32)
    return np.concatenate(probs), np.concatenate(methods)


def score(probs: np.ndarray, method_probs: np.ndarray, labels: np.ndarray, methods: np.ndarray,
          threshold: float) -> Scores:
    """FPR, TPR (overall and per method) and method accuracy on detected stego, at ``threshold``."""
    flagged = probs >= threshold
    clean = labels < 0.5
    stego = ~clean
    by_method = {}
    for i, name in enumerate(METHODS):
        rows = methods == i
        if rows.any():
            by_method[name] = float(flagged[rows].mean())
    detected = stego & flagged
    accuracy = float((method_probs[detected].argmax(1) == methods[detected]).mean()) if detected.any() else 0.0
    return Scores(threshold=threshold, fpr=float(flagged[clean].mean()) if clean.any() else 0.0,
                  tpr=float(flagged[stego].mean()) if stego.any() else 0.0, tpr_by_method=by_method,
                  method_accuracy=accuracy, clean=int(clean.sum()), stego=int(stego.sum()))


def calibrate_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The default threshold, raised just above the highest-scoring validation clean image when
    that one would be a false positive (capped at :data:`MAX_THRESHOLD`)."""
    clean = probs[labels < 0.5]
    if clean.size == 0:
        return DEFAULT_THRESHOLD
    return min(MAX_THRESHOLD, choose_threshold(clean, target_fpr=0.0, floor=DEFAULT_THRESHOLD))


def _loss(model: V4Detector, inputs: list[torch.Tensor], labels: torch.Tensor, methods: torch.Tensor,
          weights: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    _, _, _, stego_logit, method_logits = model(*inputs, with_logits=True)
    targets = labels * (1.0 - config.label_smoothing) + 0.5 * config.label_smoothing
    bce = nn.functional.binary_cross_entropy_with_logits(stego_logit, targets, weight=weights, reduction="sum")
    loss = bce / weights.sum()
    # Method loss only where the true method is stego and allowed by the capability mask (a masked
    # true class would have a logit of -1e4 and an enormous, meaningless loss).
    rows = methods >= 0
    if rows.any():
        logits = method_logits[rows]
        target = methods[rows]
        allowed = logits.gather(1, target[:, None]).squeeze(1) > -1e3
        if allowed.any():
            # Smoothing spreads target mass over the methods the file can carry: a masked logit of
            # -1e4 must not receive any (its loss would be enormous and meaningless).
            smooth = config.label_smoothing
            allowed_mask = (logits[allowed] > -1e3).float()
            soft = allowed_mask * (smooth / allowed_mask.sum(1, keepdim=True))
            soft = soft + (1.0 - smooth) * nn.functional.one_hot(target[allowed], logits.shape[1]).float()
            log_probs = torch.log_softmax(logits[allowed], dim=1).clamp(min=-1e3)
            loss = loss + config.method_weight * -(soft * log_probs).sum(1).mean()
    return loss


def unsignalled_factor(streams: StreamSet, config: TrainConfig) -> np.ndarray:
    """Per row, the factor on its loss weight: ``unsignalled_weight`` for unsignalled payloads,
    ``structured_weight`` for those of them that overwrote at least ``structured_z`` of LSB structure
    (a row without a recorded ``cover_lsb_z`` counts as unstructured), 1 for every other row."""
    factor = np.ones(len(streams), dtype=np.float64)
    if streams.unsignalled is None:
        return factor
    factor[streams.unsignalled] = config.unsignalled_weight
    if config.structured_z is not None and streams.cover_lsb_z is not None:
        with np.errstate(invalid="ignore"):  # NaN: not recorded
            structured = streams.unsignalled & (streams.cover_lsb_z >= config.structured_z)
        factor[structured] = config.structured_weight
    return factor


def train(streams: StreamSet, config: TrainConfig, log: Callable[[str], None] = _print) -> TrainResult:
    """Train a detector on ``streams`` with a seeded train/validation split."""
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError("--epochs and --batch-size must be at least 1")
    seed_everything(config.seed, config.threads)
    train_idx, val_idx = split(streams, config.val_fraction, config.seed)
    if not (streams.labels[train_idx] > 0.5).any() or not (streams.labels[train_idx] < 0.5).any():
        raise ConfigError("the training split needs both clean and stego images")
    model = V4Detector()
    fit_feature_stats(model, streams, train_idx)
    labels = streams.labels[train_idx]
    # Class balancing: each class carries the same total weight, then clean images count extra.
    n_pos, n_neg = float(labels.sum()), float(len(labels) - labels.sum())
    class_weight = np.where(labels > 0.5, len(labels) / (2 * n_pos), config.clean_weight * len(labels) / (2 * n_neg))
    class_weight = class_weight * unsignalled_factor(streams, config)[train_idx]
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train_idx) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, epochs=config.epochs,
                                                    steps_per_epoch=steps_per_epoch, pct_start=0.2)
    rng = np.random.default_rng(config.seed)
    result = TrainResult(model=model, threshold=DEFAULT_THRESHOLD)
    log(f"train {len(train_idx)} images ({int(n_pos)} stego), validate {len(val_idx)}; "
        f"{parameter_count(model):,} parameters")
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = rng.permutation(len(train_idx))
        bar = Progress(steps_per_epoch, f"epoch {epoch}/{config.epochs}")
        total = 0.0
        for step in range(steps_per_epoch):
            pick = order[step * config.batch_size:(step + 1) * config.batch_size]
            rows = train_idx[pick]
            inputs = _tensors(streams, rows)
            if config.stream_dropout > 0:
                for name in DROPPABLE_STREAMS:
                    drop = torch.from_numpy(rng.random(len(rows)) < config.stream_dropout)
                    inputs[STREAM_NAMES.index(name)][drop] = 0.0
            loss = _loss(model, inputs, torch.from_numpy(streams.labels[rows]),
                         torch.from_numpy(streams.methods[rows]),
                         torch.from_numpy(class_weight[pick].astype(np.float32)), config)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += float(loss.detach())
            bar.advance(suffix=f"loss {total / (step + 1):.4f}")
        bar.close()
        entry: dict[str, Any] = {"epoch": epoch, "loss": round(total / steps_per_epoch, 6)}
        if len(val_idx):
            probs, mprobs = predict(model, streams, val_idx)
            s = score(probs, mprobs, streams.labels[val_idx], streams.methods[val_idx], DEFAULT_THRESHOLD)
            entry.update(val_fpr=s.fpr, val_tpr=s.tpr, val_method_accuracy=s.method_accuracy)
            per = " ".join(f"{k}={v:.3f}" for k, v in s.tpr_by_method.items())
            log(f"epoch {epoch}: loss {entry['loss']:.4f}  val FPR {s.fpr:.4f} ({s.clean} clean)  "
                f"TPR {s.tpr:.4f} ({s.stego} stego)  method acc {s.method_accuracy:.4f}  [{per}]")
        else:
            log(f"epoch {epoch}: loss {entry['loss']:.4f}")
        result.history.append(entry)
    if len(val_idx):
        probs, mprobs = predict(model, streams, val_idx)
        result.threshold = calibrate_threshold(probs, streams.labels[val_idx])
        result.final = score(probs, mprobs, streams.labels[val_idx], streams.methods[val_idx], result.threshold)
        log(f"threshold {result.threshold:.4f}: val FPR {result.final.fpr:.4f}  TPR {result.final.tpr:.4f}")
    return result


def _cpu_kind() -> dict[str, Any]:
    """The CPU model, family/model numbers and vector extensions, as the training record stores them."""
    from v4runtime.quantization.host import host_features

    host = host_features()
    return {"cpu_model": host.cpu_model, "cpu_id": host.cpu_id, "cpu_flags": list(host.flags)}


def _corpus_summary(data_dir: str | Path) -> dict[str, Any]:
    """The corpus builder's own summary (``corpus.json``: seed, counts, build seconds), if present."""
    path = Path(data_dir) / "corpus.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    keys = ("seed", "clean", "stego", "size", "seconds", "workers", "manifest_sha256")
    return {k: summary[k] for k in keys if k in summary}


def run(data_dir: str | Path, out: str | Path, config: TrainConfig, *, name: str | None = None,
        report: str | Path | None = None, argv: list[str] | None = None,
        log: Callable[[str], None] = _print, build: dict[str, int] | None = None) -> dict[str, Any]:
    """The whole ``v4runtime train`` recipe: optionally build the corpus first (``build``: clean,
    stego, seed for :func:`v4runtime.datasets.build_corpus`), load (or extract) the corpus streams,
    train, export to ONNX, check parity, write the model card next to the model and, optionally, a
    JSON report. Every step is timed into the card's training record."""
    from v4runtime.model.card import build_card, card_path, write_card
    from v4runtime.model.export import export_onnx, parity

    check_config(config)
    out = Path(out)
    check_output_file(out, "the model")
    check_output_file(card_path(out), "the model card")
    if report is not None:
        check_output_file(Path(report), "the report")
    build_seconds = None
    if build is not None:
        from v4runtime.datasets import build_corpus

        check_fits(build["clean"] + build["stego"])

        summary = build_corpus(data_dir, clean=build["clean"], stego=build["stego"], seed=build["seed"],
                               workers=config.workers, progress=None)
        build_seconds = round(summary.seconds, 1)
        log(f"built corpus {data_dir}: {summary.clean} clean, {summary.stego} stego ({build_seconds}s)")
    seed_everything(config.seed, config.threads)
    t0 = time.perf_counter()
    streams, manifest_sha = load_corpus(data_dir, workers=config.workers)
    t1 = time.perf_counter()
    log(f"corpus {data_dir}: {len(streams)} images, manifest sha256 {manifest_sha[:12]}… ({t1 - t0:.1f}s)")
    result = train(streams, config, log=log)
    t2 = time.perf_counter()
    # Export beside the destination and move into place only once parity holds: a failed or
    # interrupted export never leaves a half-written file, nor replaces an earlier model.
    staged = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        try:
            export_onnx(result.model, staged)
        except OSError as exc:
            raise ConfigError(f"cannot write the model {out}: {exc.strerror or exc}") from None
        diff = parity(result.model, staged)
        t3 = time.perf_counter()
        log(f"exported {out} ({staged.stat().st_size:,} bytes); parity max |diff| {diff:.2e}")
        training: dict[str, Any] = {
            "command": " ".join(["v4runtime", *(argv or [])]),
            "corpus": _corpus_summary(data_dir),
            "config": asdict(config),
            "corpus_images": len(streams),
            "corpus_stego": int(streams.labels.sum()),
            "streams_from_cache": streams.from_cache,
            "seconds": {**({"corpus_build": build_seconds} if build_seconds is not None else {}),
                        "streams": round(t1 - t0, 1), "train": round(t2 - t1, 1), "export": round(t3 - t2, 1),
                        "total": round(t3 - t0 + (build_seconds or 0.0), 1)},
            "parity_max_abs_diff": diff,
            "history": result.history,
            "validation": asdict(result.final) if result.final else None,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            # Float kernels differ with the vector extensions: a seed reproduces weights on this CPU kind only.
            **_cpu_kind(),
        }
        card = build_card(staged, name=name or out.name.removesuffix(".onnx"), threshold=result.threshold,
                          manifest_sha256=manifest_sha, training=training)
        staged_card = write_card(card, staged.with_name(staged.name + ".card"))
        try:
            staged.replace(out)
            staged_card.replace(card_path(out))
        except OSError as exc:
            raise ConfigError(f"cannot write the model {out}: {exc.strerror or exc}") from None
    finally:
        staged.unlink(missing_ok=True)
        staged.with_name(staged.name + ".card").unlink(missing_ok=True)
    summary = {"model": str(out), "sha256": card.sha256, "parameters": card.parameters, "flops": card.flops,
               "threshold": card.threshold, **training}
    if report is not None:
        try:
            Path(report).parent.mkdir(parents=True, exist_ok=True)
            Path(report).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write the report {report}: {exc.strerror or exc}") from None
    log(f"card {card_path(out)}; {card.parameters:,} parameters, {card.flops / 1e6:.1f} MFLOPs/image; "
        f"total {t3 - t0:.1f}s")
    sys.stdout.flush()
    return summary
