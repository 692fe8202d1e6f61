"""JSON Lines files (corpus manifests): one JSON object per line, blank lines skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from v4runtime.errors import V4Error


def read_objects(path: Path, error: type[V4Error]) -> list[tuple[str, dict[str, Any]]]:
    """Each object of the file at ``path``, with where it stands (``path:line``, for messages).

    Raises:
        V4Error: of the class ``error``: the file cannot be read or is not UTF-8 text, or a line is
            not a JSON object (the message names the file and line).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {path}: {exc}") from None
    objects = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: not a JSON object ({exc.msg})") from None
        if not isinstance(record, dict):
            raise error(f"{where}: not a JSON object (got {type(record).__name__})")
        objects.append((where, record))
    return objects
