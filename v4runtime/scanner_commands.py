"""``v4runtime scan`` and ``v4runtime evaluate``: thin wrappers over the scanner and the evaluation.

Exit status of ``scan``: 0 when every file was read and none is stego, 1 when at least one file is
flagged, 2 when some file, or some folder's listing, could not be read (this wins over 1, so a script
never mistakes a partial scan for a complete one), or when the scan could not complete (the results
could not be written, an internal error: see :mod:`v4runtime.cli`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from v4runtime.errors import V4Error
from v4runtime.files import write_line

EXIT_CLEAN, EXIT_STEGO, EXIT_UNREADABLE = 0, 1, 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scan`` and ``evaluate`` subcommands."""
    scan = subparsers.add_parser(
        "scan",
        help="scan image files for hidden payloads",
        description="Scan image files with the V4 detector. Exit status: 0 all clean, 1 stego found, "
        "2 some files could not be read.",
    )
    scan.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    scan.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    out = scan.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document with every result")
    out.add_argument("--jsonl", action="store_true", help="print one JSON object per file, as they finish")
    scan.add_argument("--workers", type=int, default=1, metavar="N",
                      help="parallel workers: processes from 64 files on, else threads; at most the CPU count "
                           "(default 1)")
    scan.add_argument("--threshold", type=float, default=None, metavar="T",
                      help="stego probability threshold (default: the model card's)")
    scan.add_argument("--model", default=None, metavar="NAME|PATH",
                      help="model name or .onnx path (default: scanner.model setting, v4-default)")
    scan.add_argument("--extract", action="store_true",
                      help="recover the payload of each flagged file with v4runtime.stego")
    scan.add_argument("--config", default=None, metavar="FILE", help="YAML settings file")
    scan.set_defaults(func=run_scan, trailing_positionals="paths")

    ev = subparsers.add_parser(
        "evaluate",
        help="measure FPR/TPR of a model on a corpus",
        description="Evaluate a model on a corpus built by `v4runtime dataset build` (manifest.jsonl) or on a "
        "plain folder of clean images; writes JSON and Markdown reports.",
    )
    ev.add_argument("--data", required=True, metavar="DIR", help="corpus folder")
    ev.add_argument("--model", default=None, metavar="NAME|PATH", help="model name or .onnx path")
    ev.add_argument("--threshold", type=float, default=None, metavar="T", help="override the card's threshold")
    ev.add_argument("--out-dir", default=".", metavar="DIR", help="where to write the reports (default .)")
    ev.add_argument("--name", default=None, help="report file stem (default: the corpus folder's name)")
    ev.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    ev.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate the first N files only")
    ev.add_argument("--no-baselines", action="store_true", help="skip the V3-style and chi-square baselines")
    ev.add_argument("--no-ablation", action="store_true", help="skip the stream ablation")
    ev.add_argument("--ablation-stride", type=int, default=1, metavar="N",
                    help="run the ablation on 1 batch in N (it costs 8 more inferences per file; default 1)")
    ev.add_argument("--update-card", action="store_true", help="write the metrics into the model card")
    ev.set_defaults(func=run_evaluate)


# -- scan ------------------------------------------------------------------------------------------

#: Suffixes collected from a folder whatever the content (a file named like an image that is not
#: one is reported as unreadable).
SCAN_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"})


@dataclass
class Collected:
    """What ``scan`` found in the paths it was given.

    Attributes:
        paths: Files to scan, in order, each once.
        not_images: Files in folders that were left out: neither named nor made like an image.
        folders_not_entered: Sub-folders left out because ``--recursive`` was not given.
        not_files: Entries of folders that are neither files nor folders (named pipes, sockets,
            devices, broken links) and whose name does not say image; those whose name does are
            scanned, so the scan reports them as unreadable.
        links_not_followed: Symbolic links to folders met inside a folder: not followed (a link
            can lead out of the tree or back into it); a folder named on the command line is.
        folders_unreadable: Folders whose entries could not be listed, with the reason: their
            files were not scanned, so the scan ends with exit status 2.
    """

    paths: list[str] = field(default_factory=list)
    not_images: list[str] = field(default_factory=list)
    folders_not_entered: list[str] = field(default_factory=list)
    not_files: list[str] = field(default_factory=list)
    links_not_followed: list[str] = field(default_factory=list)
    folders_unreadable: list[str] = field(default_factory=list)


def _looks_like_an_image(path: Path) -> bool:
    """Image suffix, or magic bytes of a supported format: renaming a file does not hide it."""
    from v4runtime.streams.containers import sniff_format

    if path.suffix.lower() in SCAN_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            return sniff_format(handle.read(16)) is not None
    except OSError:
        return True  # unreadable: let the scan report why rather than leave it out


def collect_paths(paths: Iterable[str], recursive: bool) -> Collected:
    """Expand folders into the image files they hold; files (and missing paths) are kept as given.

    In a folder a file is scanned when its suffix or its first bytes say image; the others, and
    the sub-folders not entered without ``recursive``, are counted in the result rather than
    dropped unseen. A missing path stays in the list so the scan reports it as unreadable. A file
    named twice (directly or through a folder) is scanned once. An empty path is a missing file,
    not the current folder (which ``Path("")`` would be).
    """
    found = Collected()
    candidates: list[str] = []
    for raw in paths:
        p = Path(raw)
        if not raw or not _is_dir(p):
            candidates.append(raw)
            continue
        for entry in _walk(p, recursive, found):
            try:
                entry.is_symlink(), entry.is_dir(), entry.is_file()
            except OSError:  # e.g. a name too long to stat: the scan reports it as unreadable
                candidates.append(str(entry))
                continue
            if entry.is_dir():
                if entry.is_symlink():
                    found.links_not_followed.append(str(entry))
                elif not recursive:
                    found.folders_not_entered.append(str(entry))
            elif entry.is_file():
                (candidates if _looks_like_an_image(entry) else found.not_images).append(str(entry))
            elif entry.suffix.lower() in SCAN_SUFFIXES:  # a broken link or a pipe named like an image
                candidates.append(str(entry))
            else:  # never opened: reading a pipe or a device could block or never end
                found.not_files.append(str(entry))
    seen: set[str] = set()
    for path in candidates:
        key = _identity(path)
        if key not in seen:
            seen.add(key)
            found.paths.append(path)
    return found


def _identity(path: str) -> str:
    """The file ``path`` names, to scan it once; the absolute path where it cannot be resolved.

    ``Path.resolve`` raises on a symbolic-link loop (``RuntimeError`` before Python 3.13, ``OSError``
    since): such a path is kept, and the scan reports it as unreadable.
    """
    if not path:
        return path
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):
        return os.path.abspath(path)


def _walk(root: Path, recursive: bool, found: Collected) -> Iterator[Path]:
    """Entries under ``root``, each folder's sorted, a folder's contents right after it (the order
    of ``sorted(root.rglob("*"))``).

    Iterative, so a tree of any depth is walked without recursion; links to folders are listed,
    not entered. A folder that cannot be listed is added to ``found.folders_unreadable``.
    """
    stack = [iter(_list_folder(root, found))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        yield entry
        if recursive and _is_dir(entry) and not entry.is_symlink():
            stack.append(iter(_list_folder(entry, found)))


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, ``False`` where the path cannot even be looked at (too long, ...)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _list_folder(folder: Path, found: Collected) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        found.folders_unreadable.append(f"{folder}: {exc.strerror or exc}")
        return []


#: What each list of :class:`Collected` says on standard error, in this order.
_LEFT_OUT_LINES = (
    ("not_images", "left out {n} file(s) that are not images by name or content, e.g. {first}"),
    ("not_files", "left out {n} entry(ies) that are not files (pipes, sockets, devices, broken links), e.g. {first}"),
    ("links_not_followed", "left out {n} link(s) to folders, not followed, e.g. {first}: name them to scan them"),
    ("folders_unreadable", "error: {n} folder(s) could not be read, their files were not scanned, e.g. {first}"),
    ("folders_not_entered", "left out {n} sub-folder(s), e.g. {first}: scan them with --recursive"),
)


def _report_left_out(found: Collected, stream: TextIO) -> None:
    """Say on ``stream`` what the folders held that was not scanned, and when nothing was."""
    for field_name, template in _LEFT_OUT_LINES:
        entries = getattr(found, field_name)
        if entries:
            print(template.format(n=len(entries), first=_shown(entries[0])), file=stream)
    if not found.paths:
        print("warning: no image files found: nothing was scanned", file=stream)


def _say(line: str, stream: TextIO | None = None) -> None:
    """Print ``line``; where ``stream``'s encoding cannot show a character (a file name whose bytes
    are not UTF-8, an ASCII-only terminal) write it as a backslash escape instead of failing.

    Raises:
        OutputError: ``stream`` cannot be written (a full disk).
    """
    stream = sys.stdout if stream is None else stream
    try:
        write_line(line, stream)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        write_line(line.encode(encoding, "backslashreplace").decode(encoding), stream)


def _shown(text: str) -> str:
    """``text`` with its non-printable characters as backslash escapes (``\\n``, ``\\x1b``...).

    A file name may hold a newline or a terminal escape sequence: shown as is, it would forge a
    line of the report or drive the terminal.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _progress_bar(total: int, stream: TextIO) -> Any:
    """A progress bar on ``stream`` when it is a terminal, else ``None`` (logs stay clean)."""
    if not getattr(stream, "isatty", lambda: False)():
        return None
    from v4runtime.model.progress import Progress

    return Progress(total, "scan", stream=stream)


def _text_share(payload: bytes) -> float:
    """Share of ``payload``'s characters that are printable text once decoded as UTF-8."""
    text = payload.decode("utf-8", "replace")
    return sum(c.isprintable() or c in "\n\r\t" for c in text if c != "\ufffd") / max(1, len(text))


def _extract_payload(path: str, method: str | None) -> dict[str, Any]:
    """Try to recover the payload of a flagged file with :func:`v4runtime.stego.extract`.

    With the ``AI42`` marker a payload verifies itself, bit order included: the detected method is
    tried first, then the others, both bit orders each. Without it every method and bit order
    reads *something* up to the first NUL, so the detected method's reads are compared (the other
    methods' only when it yields nothing) and the one most like text wins: a text payload read in
    the wrong bit order comes out as bit-reversed bytes. Such a payload is ``verified: false``.

    A ``raw`` payload with no NUL runs to the end of the file (``cat cover.png note.txt``), and the
    bit-plane methods are not tried on lossy files (JPEG, lossy WebP): lossy coding keeps no LSB,
    so what they read there is noise.
    """
    from v4runtime import stego
    from v4runtime.files import read_file
    from v4runtime.streams.spec import METHODS

    try:
        data = read_file(path)
    except V4Error as exc:
        return {"method": None, "error": str(exc)}
    lossy = _is_lossy(data)
    methods = [m for m in dict.fromkeys(m for m in (method, *METHODS) if m) if not (lossy and m in stego.BIT_METHODS)]
    reads = [(m, order) for m in methods for order in (stego.BIT_ORDERS if m in stego.BIT_METHODS else ("lsb-first",))]
    last_error = "no payload found"
    unverified: list[tuple[str, str, bytes, bool]] = []
    for marker in (True, False):
        for m, order in reads:
            try:
                payload, to_end = _read_payload(data, m, order, marker)
            except V4Error as exc:
                last_error = str(exc)
                continue
            if not payload:
                continue
            if marker:
                return _payload_record(m, order, payload, verified=True, to_end=to_end)
            unverified.append((m, order, payload, to_end))
    if not unverified:
        return {"method": None, "error": last_error}
    first_method = unverified[0][0]  # the detected method when it yielded anything
    m, order, payload, to_end = max((u for u in unverified if u[0] == first_method), key=lambda u: _text_share(u[2]))
    return _payload_record(m, order, payload, verified=False, to_end=to_end)


def _is_lossy(data: bytes) -> bool:
    """The file is lossy-coded (JPEG, lossy WebP); ``False`` when its container cannot be read."""
    from v4runtime.errors import ImageError
    from v4runtime.streams.containers import parse_container

    try:
        return not parse_container(data).lossless
    except ImageError:
        return False


def _read_payload(data: bytes, method: str, order: str, marker: bool) -> tuple[bytes, bool]:
    """``(payload, ran to the end of the file)``: one read of :func:`v4runtime.stego.extract`.

    An appended file (``cat cover.png note.txt``) has no NUL terminator: for ``raw`` the payload is
    then the whole tail, where ``extract`` would find none.
    """
    from v4runtime import stego
    from v4runtime.errors import ExtractError
    from v4runtime.stego import raw

    try:
        return stego.extract(data, method, bit_order=order, marker=marker), False
    except ExtractError as exc:
        if method != "raw" or exc.reason != "no_terminator":
            raise
    length = len(raw.read(data)) - (len(stego.MARKER) if marker else 0)
    return stego.extract(data, method, marker=marker, length=length), True


def _payload_record(method: str, order: str, payload: bytes, *, verified: bool, to_end: bool = False) -> dict[str, Any]:
    from v4runtime import stego

    return {
        "method": method,
        "bit_order": order if method in stego.BIT_METHODS else None,
        "verified": verified,
        "ends_at": "end_of_file" if to_end else "nul",
        "size": len(payload),
        "kind": "text" if _text_share(payload) >= 0.9 else "binary",
        "text": payload.decode("utf-8", "replace"),
        "hex": payload[:64].hex(),
    }


def _summary(results: list[Any], stream: TextIO) -> None:
    stego = [r for r in results if r.error is None and r.is_stego]
    bad = [r for r in results if r.error is not None]
    methods = Counter(r.method for r in stego)
    rows = [("files", len(results)), ("clean", len(results) - len(stego) - len(bad)),
            ("stego", len(stego)), ("unreadable", len(bad))]
    rows += [(f"  method {m}", n) for m, n in sorted(methods.items())]
    reasons = Counter(r.error_reason for r in bad)
    rows += [(f"  unreadable: {reason}", n) for reason, n in sorted(reasons.items())]
    width = max(len(k) for k, _ in rows)
    write_line("", stream)
    write_line(f"{'summary':<{width}}  count", stream)
    for key, n in rows:
        _say(f"{key:<{width}}  {n:>5}", stream)


def _human_line(r: Any) -> str:
    path = _shown(r.path) if r.path else "''"
    if r.error is not None:
        return f"UNREADABLE  {path}  ({r.error_reason}: {_shown(r.error)})"
    if r.is_stego:
        return f"STEGO       {path}  p={r.probability:.4f}  method={r.method}  format={r.format}"
    return f"clean       {path}  p={r.probability:.4f}"


def _payload_line(payload: dict[str, Any] | None) -> str:
    if payload is None:
        return ""
    if payload.get("method"):
        order = f", {payload['bit_order']}" if payload.get("bit_order") else ""
        read_to = "to the end of the file" if payload.get("ends_at") == "end_of_file" else "up to a NUL"
        where = payload["method"] if payload["verified"] else (
            f"{payload['method']}{order}, unverified: no AI42 marker, read {read_to}")
        shown = repr(payload["text"][:200]) if payload.get("kind") == "text" else f"binary, hex {payload['hex'][:48]}…"
        return f"\n            payload ({where}, {payload['size']} B): {shown}"
    return f"\n            payload: not recovered ({_shown(payload['error'])})"


def run_scan(args: argparse.Namespace) -> int:
    """Scan the given paths; print results; return 0, 1 or 2 (see the module docstring)."""
    from v4runtime.config import load_settings
    from v4runtime.errors import ConfigError
    from v4runtime.scanner import Scanner

    settings = load_settings(args.config).scanner
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold must be within [0, 1], got {args.threshold}")
    threshold = args.threshold if args.threshold is not None else settings.threshold
    scanner = Scanner(model=args.model or settings.model, threshold=threshold)
    found = collect_paths(args.paths, args.recursive)
    paths = found.paths
    bar = _progress_bar(len(paths), sys.stderr)
    results, records = [], []
    try:
        for r in _scan_iter(scanner, paths, args.workers, bar):
            record = r.to_dict()
            if args.extract and r.is_stego:
                record["payload"] = _extract_payload(r.path, r.method)
            results.append(r)
            records.append(record)
            if args.jsonl:
                write_line(json.dumps(record), sys.stdout, flush=True)
            elif not args.json:
                _say(_human_line(r) + _payload_line(record.get("payload")))
    finally:
        scanner.close()
    if bar is not None:
        bar.close()
    if args.json:
        write_line(json.dumps({"model": scanner.model_name, "model_sha256": scanner.model_sha256,
                          "threshold": scanner.threshold, "results": records,
                          "left_out": {"not_images": found.not_images, "not_files": found.not_files,
                                       "folders_not_entered": found.folders_not_entered,
                                       "links_not_followed": found.links_not_followed,
                                       "folders_unreadable": found.folders_unreadable}}, indent=2), sys.stdout)
    elif not args.jsonl:
        _summary(results, sys.stdout)
    _report_left_out(found, sys.stderr)
    if found.folders_unreadable or any(r.error is not None for r in results):
        return EXIT_UNREADABLE
    return EXIT_STEGO if any(r.is_stego for r in results) else EXIT_CLEAN


def _scan_iter(scanner: Any, paths: list[str], workers: int, bar: Any) -> Iterator[Any]:
    for r in scanner.iter_scan(paths, workers=workers):  # one file per call: batching is slower on CPU (bench scan)
        if bar is not None:
            bar.advance(1)
        yield r


# -- evaluate --------------------------------------------------------------------------------------


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a model on a corpus; write ``<name>.json``/``.md`` (+ comparison, ablation)."""
    import shlex

    from v4runtime import evaluation
    from v4runtime.scanner import Scanner

    if args.limit is not None and args.limit < 1:
        raise evaluation.EvaluationError(f"--limit must be at least 1, got {args.limit}")
    samples = evaluation.load_corpus(args.data)
    if args.limit is not None:
        samples = samples[: args.limit]
    corpus = evaluation.corpus_meta(args.data)  # a damaged corpus.json fails now, not after the scan
    try:  # likewise a report folder that cannot be made
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise evaluation.EvaluationError(f"cannot make the report folder {args.out_dir}: {exc.strerror or exc}") from None
    scanner = Scanner(model=args.model, threshold=args.threshold)
    bar = _progress_bar(len(samples), sys.stderr)
    try:
        report = evaluation.evaluate(
            scanner,
            samples,
            baselines=not args.no_baselines,
            ablation=not args.no_ablation,
            workers=args.workers,
            progress=(lambda n: bar.advance(n)) if bar is not None else None,
            root=args.data,
            ablation_stride=args.ablation_stride,
        )
    finally:  # on Ctrl-C too: ends the bar's line, so "interrupted" gets a line of its own
        if bar is not None:
            bar.close()
    name = args.name or Path(args.data).resolve().name
    report["meta"] = {
        "model": scanner.model_name,
        "model_sha256": scanner.model_sha256,
        "threshold": scanner.threshold,
        "corpus": name,
        "files": len(samples),
        "workers": args.workers,
        "command": "v4runtime evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if sys.argv[1:2] == ["evaluate"] else f"v4runtime evaluate --data {args.data}",
    }
    report["meta"].update(corpus)
    json_path, md_path = evaluation.write_report(report, args.out_dir, name)
    m = report["model"]
    print(f"model {scanner.model_name}  threshold {scanner.threshold}  files {len(samples)}")
    print(f"FPR {evaluation.fmt_rate(m['fpr'], 3)}")
    print(f"TPR {evaluation.fmt_rate(m['tpr'])}")
    print(f"method accuracy {evaluation.fmt_rate(m['method_accuracy'])}")
    print(f"unreadable {sum(m['errors'].values())}")
    print(f"wrote {json_path} and {md_path}")
    if args.update_card:
        path = evaluation.update_card(scanner, report, name)
        print(f"updated {path}")
    return 0
