"""Does a training run reproduce a shipped model? Compare its report with the model's card.

A seed fixes the weights only with the same corpus, the same library versions and the same kind
of CPU: PyTorch's float kernels differ with the vector extensions. ``v4runtime model-card
--reproduction REPORT`` compares a ``v4runtime train --report`` file with the shipped model, and
with ``--docs DIR`` adds the run to the record (``reproductions.json``, rendered as
``reproductions.md``) that the detector page includes.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from v4runtime.model.card import ModelCard

#: File names of the record in the docs' generated folder.
RECORD_JSON = "reproductions.json"
RECORD_MARKDOWN = "reproductions.md"


@dataclass(frozen=True)
class Reproduction:
    """One training run set against a shipped model.

    Attributes:
        model: Name of the shipped model.
        shipped_sha256: Its sha256.
        sha256: sha256 of the model the run exported.
        same_model: The two files are identical.
        same_corpus: The run trained on the corpus the model's card names (same manifest sha256).
        same_command: The run's settings (``config``) are the shipped run's.
        parted_at_epoch: First epoch whose training loss differs from the shipped record (None when
            every recorded epoch agrees, or the shipped record has no history).
        cpu: CPU model and vector extensions of the run (empty when its report predates them).
        torch: PyTorch version of the run.
        corpus_build_seconds: Time to build the corpus, when its ``corpus.json`` recorded it.
        training_seconds: Time of ``v4runtime train`` after the corpus was built (streams, epochs, export).
        recorded: UTC date the comparison was recorded.
    """

    model: str
    shipped_sha256: str
    sha256: str
    same_model: bool
    same_corpus: bool
    same_command: bool
    parted_at_epoch: int | None
    cpu: str
    torch: str
    corpus_build_seconds: float | None
    training_seconds: float | None
    recorded: str


def _cpu(report: dict[str, Any]) -> str:
    if not report.get("cpu_model"):
        return ""
    from v4runtime.quantization.host import cpu_name  # late: the package imports onnxruntime's quantiser

    return f"{cpu_name(report)} ({', '.join(report.get('cpu_flags') or []) or 'no AVX2'})"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _sequence(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _parted_at(ours: list[Any], shipped: list[Any]) -> int | None:
    for number, (a, b) in enumerate(zip(ours, shipped, strict=False), start=1):
        if not isinstance(a, dict) or not isinstance(b, dict) or a.get("loss") != b.get("loss"):
            return number
    return None


def compare(report: dict[str, Any], card: ModelCard, *, today: dt.date | None = None) -> Reproduction:
    """Set a ``train --report`` summary against ``card`` (the shipped model's card)."""
    shipped = card.training or {}
    seconds = _mapping(report.get("seconds"))
    corpus = _mapping(report.get("corpus"))
    build = seconds.get("corpus_build", corpus.get("seconds"))
    total = seconds.get("total")
    if total is not None and "corpus_build" in seconds:  # the one-command recipe counts the build in its total
        total = round(total - seconds["corpus_build"], 1)
    return Reproduction(
        model=card.name,
        shipped_sha256=card.sha256,
        sha256=str(report.get("sha256", "")),
        same_model=report.get("sha256") == card.sha256,
        same_corpus=corpus.get("manifest_sha256") == card.training_manifest_sha256,
        same_command=report.get("config") == shipped.get("config"),
        parted_at_epoch=_parted_at(_sequence(report.get("history")), _sequence(shipped.get("history"))),
        cpu=_cpu(report),
        torch=str(report.get("torch", "")),
        corpus_build_seconds=build,
        training_seconds=total,
        recorded=(today or dt.datetime.now(dt.UTC).date()).isoformat(),
    )


def describe(rep: Reproduction) -> str:
    """One line for the terminal: the verdict and why."""
    if rep.same_model:
        return f"reproduced {rep.model}: sha256 {rep.sha256[:12]}… is the shipped model's"
    why = []
    if not rep.same_corpus:
        why.append("another corpus (manifest sha256 differs from the card's)")
    if not rep.same_command:
        why.append("other training settings")
    if rep.parted_at_epoch is not None:
        why.append(f"the training loss parted from the shipped record at epoch {rep.parted_at_epoch}")
    return (f"did not reproduce {rep.model}: sha256 {rep.sha256[:12]}… is not {rep.shipped_sha256[:12]}…"
            + (f" ({'; '.join(why)})" if why else ""))


def load_record(out_dir: str | Path) -> list[dict[str, Any]]:
    """The runs recorded so far in ``out_dir`` (empty when there is no record)."""
    path = Path(out_dir) / RECORD_JSON
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def add_to_record(rep: Reproduction, out_dir: str | Path) -> list[Path]:
    """Append ``rep`` to the record in ``out_dir``, rewrite its Markdown; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = load_record(out_dir) + [asdict(rep)]
    (out_dir / RECORD_JSON).write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    (out_dir / RECORD_MARKDOWN).write_text(render(entries), encoding="utf-8")
    return [out_dir / RECORD_JSON, out_dir / RECORD_MARKDOWN]


def _seconds(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:,.0f} s"


def _recipe(entry: dict[str, Any]) -> str:
    """Corpus build plus training, in minutes (the issue's budget is 45), when both were recorded."""
    if entry["corpus_build_seconds"] is None or entry["training_seconds"] is None:
        return "not recorded"
    return f"{(entry['corpus_build_seconds'] + entry['training_seconds']) / 60:.1f} min"


def render(entries: list[dict[str, Any]]) -> str:
    """The record as a Markdown table, one row per run."""
    if not entries:
        return "No reproduction has been recorded.\n"
    lines = [
        "| Recorded | Model | CPU | torch | Same corpus | Corpus build | Streams, epochs, export | Recipe | Result |",
        "|---|---|---|---|---|---:|---:|---:|---|",
    ]
    for e in entries:
        if e["same_model"]:
            result = f"**same model** (sha256 `{e['sha256'][:12]}…`)"
        else:
            parted = f", loss parted at epoch {e['parted_at_epoch']}" if e["parted_at_epoch"] else ""
            result = f"different model (`{e['sha256'][:12]}…`{parted})"
        lines.append(
            f"| {e['recorded']} | `{e['model']}` | {e['cpu'] or 'not recorded'} | {e['torch']} | "
            f"{'yes' if e['same_corpus'] else 'no'} | {_seconds(e['corpus_build_seconds'])} | "
            f"{_seconds(e['training_seconds'])} | {_recipe(e)} | {result} |"
        )
    return "\n".join(lines) + "\n"
