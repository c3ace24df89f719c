"""Small pieces the subcommands share: durations, times and JSON output."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import click

_DURATION = re.compile(r"(\d+)([wdhms])")
_UNIT_S = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> int:
    """``"30d"``, ``"12h"``, ``"1d12h"``, ``"90m"`` or ``"45s"`` as whole seconds."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"not a duration: {text!r} (examples: 30d, 12h, 1d12h, 90m, 45s)")
    seconds = sum(int(n) * _UNIT_S[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return seconds


class Duration(click.ParamType[int]):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


class Timestamp(click.ParamType[float]):
    """An RFC 3339 time or Unix seconds, as Unix seconds."""

    name = "time"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"not a time: {text!r} (use 2026-11-22T08:00:00Z or Unix seconds)")
        if parsed.tzinfo is None:
            self.fail(f"time {text!r} needs a UTC offset, e.g. a trailing Z", param, ctx)
        return parsed.timestamp()


def echo_json(doc: Any) -> None:
    click.echo(json.dumps(doc, sort_keys=True))
