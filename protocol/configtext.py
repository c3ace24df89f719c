"""Reading a TOML configuration into a strict model, with errors a person can act on.

Every part of Pintu (node, hub, registry) has a typed configuration; this is the one
place that turns a validation error into ``file:line: key: what is wrong``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from protocol.errors import ProtocolError

M = TypeVar("M", bound=BaseModel)


class ConfigTextError(ProtocolError):
    """A configuration file cannot be read or does not fit its model; one line a problem."""


_TABLE = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")


def find_line(text: str, loc: tuple[str | int, ...]) -> int | None:
    """The line (1-based) where the dotted key ``loc`` is set in TOML ``text``, if found.

    List indexes in ``loc`` (``facilities.1.doors.0.id``) pick the n-th ``[[table]]`` of
    that name, so an error in the second facility points at the second facility.
    """
    parts = list(loc)
    if not parts:
        return None
    wanted = [str(p) for p in parts if not isinstance(p, int)]
    # The index of each array-of-tables header level, counted as the file is read.
    counters: dict[tuple[str, ...], int] = {}
    index_path: dict[tuple[str, ...], int] = {}
    table: list[str] = []
    best: int | None = None
    best_depth = 0
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE.match(line)
        if header:
            table = [p.strip().strip("\"'") for p in header.group(1).split(".")]
            if line.lstrip().startswith("[["):
                key = tuple(table)
                counters[key] = counters.get(key, -1) + 1
                index_path[key] = counters[key]
                # A new parent entry starts the numbering of its child tables again.
                for other in list(counters):
                    if len(other) > len(key) and other[: len(key)] == key:
                        del counters[other]
            # A missing key is reported at the deepest table that should hold it.
            if _matches(table, parts, index_path) and len(table) > best_depth:
                best, best_depth = number, len(table)
            continue
        match = _KEY.match(line)
        if match and _matches([*table, match.group(1).strip("\"'")], parts, index_path):
            if len(table) + 1 == len(wanted):
                return number
            if len(table) + 1 > best_depth:
                best, best_depth = number, len(table) + 1
    return best


def _matches(
    names: list[str], loc: list[str | int], index_path: dict[tuple[str, ...], int]
) -> bool:
    """Whether the table path ``names`` (as read) leads to the location ``loc``."""
    position = 0
    for depth, name in enumerate(names):
        if position >= len(loc) or str(loc[position]) != name:
            return False
        position += 1
        if position < len(loc) and isinstance(loc[position], int):
            if index_path.get(tuple(names[: depth + 1])) != loc[position]:
                return False
            position += 1
    return True


def describe_errors(
    err: ValidationError, text: str, where: str, union_tags: Collection[str] = ()
) -> list[str]:
    """One ``where:line: key: message`` line per problem.

    ``union_tags`` are the values of discriminated unions' tags: pydantic puts them in an
    error's location, but they are not keys of the file.
    """
    problems = []
    for item in err.errors():
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p in union_tags))
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = find_line(text, loc)
        at = f"{where}:{line}" if line else where
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        problems.append(f"{at}: {key}: {message}")
    return problems


def parse_model(text: str, model: type[M], where: str, union_tags: Collection[str] = ()) -> M:
    """``text`` (TOML) as a ``model``; ``ConfigTextError`` naming every bad key."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigTextError(f"{where}: not valid TOML: {err}") from err
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigTextError("\n".join(describe_errors(err, text, where, union_tags))) from err


def read_text(path: str | Path) -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigTextError(f"{path}: cannot read config: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigTextError(f"{path}: not UTF-8 text") from err
