"""Render the streams tables included in the docs (``docs/generated/streams/``).

Run ``python -m v4runtime.streams.doctables docs/generated/streams`` after changing the stream
contract, the feature layouts, the error reasons (of the streams or of the scanner) or the methods; a
test fails while the committed tables differ from what this module renders.
"""

from __future__ import annotations

import sys
from pathlib import Path

from v4runtime.stego import BIT_METHODS, BIT_ORDERS, METHOD_FORMATS
from v4runtime.streams import content as content_module
from v4runtime.streams import neighbours as neighbours_module
from v4runtime.streams import payload_end as payload_end_module
from v4runtime.streams.content import feature_names
from v4runtime.streams.extract import REASONS
from v4runtime.streams.features import FORMAT_FEATURE_NAMES
from v4runtime.streams.spec import META_WINDOW, METHODS, STREAM_SPECS, VIEW

#: Constants of the ``content`` stream shown on the streams page, with what each one sets.
_CONTENT_CONSTANTS = (
    ("HEAD_BYTES", "bytes of each bit stream described from its start"),
    ("HEAD_WINDOWS", "head profile windows, in samples"),
    ("NEIGHBOUR_WINDOWS", "neighbour profile windows, in samples"),
    ("BLOCK_SAMPLES", "samples per block of the noise run"),
    ("PROFILE_BLOCKS", "blocks of the noise run"),
    ("NOISE_Z", "standard errors from 0.5 a block of the noise run may lie"),
    ("MIN_BLOCK_PAIRS", "close pairs a block of the noise run needs"),
)
#: Constants of the weighted-stego estimate (``v4runtime.streams.neighbours``).
_NEIGHBOUR_CONSTANTS = (
    ("WS_DAMPING", "weighted stego: weight 1 / (this + local variance)"),
    ("WS_RESIDUAL_CLIP", "weighted stego: deviations from the neighbours' mean clipped to +- this"),
)
#: Constants of the payload-end test (``v4runtime.streams.payload_end``).
_PAYLOAD_END_CONSTANTS = (
    ("GRID", "payload-end test: candidate ends are multiples of this many samples"),
    ("SCAN_SAMPLES", "payload-end test: samples of each bit stream it reads"),
    ("LLR_LOG_SCALE", "payload-end test: log1p(likelihood ratio) / this is reported, clipped to 1"),
    ("NOISE_Z_HALF", "payload-end test: standard errors from 0.5 at which the noise z value reads 0.5"),
)


#: What to do about each reason a scan can report: the extraction's (``REASONS``) and the scanner's own.
_REASON_FIXES = {
    "empty": "the upload or copy failed: fetch the file again",
    "not_an_image": "V4 reads only these formats: convert the file, or leave it out",
    "truncated": "usually an interrupted transfer: fetch the file again",
    "corrupt": "fetch the file again; if the source's copy is broken too, it cannot be scanned",
    "too_many_pixels": "refuse such uploads upstream",
    "too_large": "refuse such uploads upstream",
    "unsupported_mode": "convert to 8-bit RGB or RGBA first",
    "not_found": "check the path",
    "not_a_file": "name files or folders (a folder's files are scanned, `-r` adds its sub-folders); "
                  "pipes, sockets and devices are never read",
    "unreadable": "check the file's permissions, and `dmesg` for I/O errors",
    "internal": "a bug: report it with the file and the message, which names the exception",
    "worker_died": "check `dmesg` for the OOM killer; scan the files again with fewer `--workers`",
    "bad_streams": "pass the eight streams as `v4runtime.streams` extracts them",
    "bad_input": "pass a path or the file's bytes",
}
#: Meaning of the reasons the scanner adds to the extraction's (``v4runtime.scanner.INTERNAL_REASONS``).
_SCANNER_REASONS = {
    "internal": "not the file's fault: an unexpected exception while decoding or scanning it",
    "worker_died": "not the file's fault: the worker process scanning the file's batch died on every try "
                   "(out of memory, a signal, a crash in a decoder); the file was not scanned",
    "bad_streams": "not the file's fault: streams given to `Scanner.scan_arrays` have the wrong shape (Python API)",
    "bad_input": "not the file's fault: `Scanner.scan` was given neither a path nor bytes (Python API)",
}


def reason_rows() -> list[list[str]]:
    """Every reason a scan can report, with its meaning and what to do.

    Raises:
        ValueError: a reason of the extraction or the scanner without a meaning or a fix here.
    """
    from v4runtime.scanner import INTERNAL_REASONS

    meanings = {**REASONS, **{k: v for k, v in _SCANNER_REASONS.items() if k not in REASONS}}
    missing = sorted((set(REASONS) | set(INTERNAL_REASONS)) - (meanings.keys() & _REASON_FIXES.keys()))
    if missing:
        raise ValueError(f"describe these scan error reasons in v4runtime/streams/doctables.py: {', '.join(missing)}")
    reasons = [*REASONS, *(k for k in _SCANNER_REASONS if k in INTERNAL_REASONS and k not in REASONS)]
    return [[f"`{k}`", meanings[k], _REASON_FIXES[k]] for k in reasons]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render() -> dict[str, str]:
    """Return ``{file name: Markdown}`` for every generated streams table."""
    streams = _table(
        ["#", "stream", "shape (no batch axis)", "dtype", "channels"],
        [[str(i), f"`{s.name}`", f"`{s.shape}`", f"`{s.dtype.__name__}`", s.summary] for i, s in enumerate(STREAM_SPECS)],
    )
    constants = _table(["constant", "value"], [
        ["`VIEW` (window side)", str(VIEW)],
        ["`META_WINDOW` (bytes per window)", str(META_WINDOW)],
        *([f"`{name}` ({what})", str(getattr(content_module, name))] for name, what in _CONTENT_CONSTANTS),
        *([f"`{name}` ({what})", str(getattr(neighbours_module, name))] for name, what in _NEIGHBOUR_CONSTANTS),
        *([f"`{name}` ({what})", str(getattr(payload_end_module, name))] for name, what in _PAYLOAD_END_CONSTANTS),
    ])
    fmt = _table(["index", "feature"], [[str(i), f"`{n}`"] for i, n in enumerate(FORMAT_FEATURE_NAMES)])
    content = _table(["index", "feature"], [[str(i), f"`{n}`"] for i, n in enumerate(feature_names())])
    reasons = _table(["reason", "meaning", "what to do"], reason_rows())
    methods = _table(
        ["#", "method", "formats", "bit orders"],
        [
            [str(i), f"`{m}`", ", ".join(METHOD_FORMATS[m]), ", ".join(BIT_ORDERS) if m in BIT_METHODS else "n/a (whole bytes)"]
            for i, m in enumerate(METHODS)
        ],
    )
    from v4runtime.datasets import corpus

    corpus_table = _table(
        ["parameter", "value"],
        [
            ["payload size (bytes, log-uniform)", f"{corpus.PAYLOAD_MIN} to {corpus.PAYLOAD_MAX}"],
            ["share of clean images that are hard negatives", f"{corpus.HARD_NEGATIVE_SHARE:.0%}"],
            ["hard-negative kinds", ", ".join(f"`{k}`" for k in corpus.HARD_NEGATIVES)],
            ["clean (format, mode) profiles", ", ".join(f"{f} {m}" for f, m in dict.fromkeys(corpus.CLEAN_PROFILES))],
        ],
    )
    return {
        "corpus.md": corpus_table,
        "streams.md": streams,
        "constants.md": constants,
        "format-features.md": fmt,
        "content-features.md": content,
        "reasons.md": reasons,
        "methods.md": methods,
    }


def write(out: Path) -> list[Path]:
    """Write every table into ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render().items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":  # pragma: no cover - exercised by the docs build instructions
    for written in write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/generated/streams")):
        print(written)
