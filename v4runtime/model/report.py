"""Markdown renderings of a model for the docs: card, architecture budget, training run.

Every figure comes from the model file and its card; ``v4runtime model-card --docs DIR`` writes
the three fragments the architecture guide includes, and a test fails when they are stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from v4runtime.model.card import ModelCard, render_markdown
from v4runtime.model.flops import GraphCost, graph_cost

#: Budgets from the issue, printed beside the measured figures.
PARAMETER_BUDGET = 2_000_000
FLOP_BUDGET = 50_000_000


def render_architecture(cost: GraphCost) -> str:
    """Parameters and FLOPs per component of the network, against the budgets."""
    lines = ["| Component | Parameters | FLOPs per image | Share of FLOPs |", "|---|---:|---:|---:|"]
    for name, (params, flops) in cost.components.items():
        lines.append(f"| `{name}` | {params:,} | {flops:,} | {100 * flops / max(cost.flops, 1):.1f}% |")
    lines.append(f"| **total** | **{cost.parameters:,}** | **{cost.flops:,}** | 100% |")
    lines += [
        "",
        f"Budget: {cost.parameters / PARAMETER_BUDGET:.1%} of {PARAMETER_BUDGET:,} parameters, "
        f"{cost.flops / FLOP_BUDGET:.1%} of {FLOP_BUDGET / 1e6:.0f} MFLOPs per image "
        f"({cost.flops / 1e6:.1f} MFLOPs).",
    ]
    return "\n".join(lines) + "\n"


def render_training(training: dict[str, Any]) -> str:
    """The training command, its timing and the per-epoch validation history."""
    if not training:
        return "This model carries no training record.\n"
    seconds = training.get("seconds", {})
    lines = [
        "```text",
        training.get("command", "?"),
        "```",
        "",
        "| Step | Seconds |",
        "|---|---:|",
        *(f"| {k} | {v} |" for k, v in seconds.items()),
        "",
        f"Corpus: {training.get('corpus_images', '?')} images ({training.get('corpus_stego', '?')} stego"
        f"{'; streams read from the cache' if training.get('streams_from_cache') else ''}); "
        f"{training.get('cpus', '?')} CPUs{_cpu_kind(training)}, torch {training.get('torch', '?')}; "
        f"parity max abs diff {training.get('parity_max_abs_diff', float('nan')):.2e}.",
        "",
        "| Setting | Value |",
        "|---|---|",
        *(f"| `{k}` | {v} |" for k, v in training.get("config", {}).items()),
        *(f"| corpus `{k}` | {v} |" for k, v in training.get("corpus", {}).items() if k != "manifest_sha256"),
        "",
        "| Epoch | Loss | Val FPR | Val TPR | Val method accuracy |",
        "|---:|---:|---:|---:|---:|",
    ]
    for e in training.get("history", []):
        lines.append(f"| {e['epoch']} | {e['loss']:.4f} | {e.get('val_fpr', float('nan')):.4f} | "
                     f"{e.get('val_tpr', float('nan')):.4f} | {e.get('val_method_accuracy', float('nan')):.4f} |")
    val = training.get("validation")
    if val:
        per = ", ".join(f"{k} {v:.4f}" for k, v in val["tpr_by_method"].items())
        lines += ["", f"At the calibrated threshold {val['threshold']:.4f} on the validation split "
                  f"({val['clean']} clean, {val['stego']} stego): FPR {val['fpr']:.4f}, TPR {val['tpr']:.4f} "
                  f"({per}); method accuracy {val['method_accuracy']:.4f}."]
    return "\n".join(lines) + "\n"


def render_docs(model_path: str | Path, card: ModelCard) -> dict[str, str]:
    """File name -> Markdown of the three generated fragments for ``model_path``."""
    return {
        "card.md": render_markdown(card),
        "architecture.md": render_architecture(graph_cost(model_path)),
        "training.md": render_training(card.training),
    }


def write_docs(model_path: str | Path, card: ModelCard, out_dir: str | Path) -> list[Path]:
    """Write :func:`render_docs` into ``out_dir``; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_docs(model_path, card).items():
        (out_dir / name).write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    return written


def _cpu_kind(training: dict[str, Any]) -> str:
    """`` (model; extensions)`` of the training CPU, when the record has it (records since it was added)."""
    if not training.get("cpu_model"):
        return ""
    from v4runtime.quantization.host import cpu_name  # late: the package imports onnxruntime's quantiser

    return f" ({cpu_name(training)}; {', '.join(training.get('cpu_flags') or []) or 'no AVX2'})"
