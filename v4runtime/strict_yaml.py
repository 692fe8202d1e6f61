"""YAML for files people write by hand: safe, and strict about mapping keys.

``yaml.safe_load`` keeps the last of two equal keys without a word, so a settings file with
``monitor:`` twice silently loses the first section. :func:`load` refuses that instead (a
``yaml.YAMLError`` naming both lines), and keys that are not strings.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate and non-string mapping keys instead of losing data."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Check every key (string, not repeated), then build the mapping as SafeLoader does."""
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConstructorError(
                    None, None, f"mapping key {key!r} is not a string (quote it)", key_node.start_mark
                )
            if key in seen:
                raise ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load(text: str) -> Any:
    """Parse ``text`` like ``yaml.safe_load``, refusing duplicate and non-string keys.

    Raises:
        yaml.YAMLError: not valid YAML, a key repeated or not a string, or nested too deeply.
    """
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:  # `[[[[...` thousands deep: PyYAML recurses once per level
        raise yaml.YAMLError("nested too deeply") from None


def describe(exc: yaml.YAMLError) -> str:
    """A one-line account of a YAML error: ``line N: what is wrong``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return f"line {mark.line + 1}: {problem}" if mark is not None else problem
