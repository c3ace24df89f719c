"""Drive an HTTP API from its OpenAPI document with schemathesis, as a logged-in user.

``run(schema, call, examples)`` generates ``examples`` requests per operation and mode
(data that fits the schema, and data that does not), sends each through ``call`` and
checks what a client would notice: never a 5xx, and every 4xx says why (a JSON body with
an ``error`` code). It returns a tally and the failures found, never raising mid-run, so
one report lists every operation that misbehaved.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

Call = Callable[[Any], Any]  # a schemathesis Case -> a response with status_code and content


@dataclass
class Tally:
    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    unsatisfiable: list[str] = field(default_factory=list)

    def add(self, label: str, response: Any) -> None:
        self.requests += 1
        status = int(response.status_code)
        self.by_status[status] += 1
        if status >= 500:
            self._fail(label, status, response)
        elif 400 <= status < 500 and not _has_reason(response):
            self._fail(label, status, response, "a 4xx without a reason")

    def _fail(self, label: str, status: int, response: Any, why: str = "server error") -> None:
        text = bytes(response.content[:300]).decode("utf-8", "replace")
        if len(self.failures) < 50:
            self.failures.append(f"{label}: {status} ({why}): {text}")

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.by_status.items() if status >= 500)


def _has_reason(response: Any) -> bool:
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("error"))


def run(
    schema: Any,
    call: Call,
    examples: int,
    *,
    skip: Iterable[tuple[str, str]] = (),
    modes: Iterable[GenerationMode] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
) -> Tally:
    tally = Tally()
    skipped = {(method.upper(), path) for method, path in skip}
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in skipped:
            continue
        for mode in modes:
            label = f"{operation.method.upper()} {operation.path} ({mode.value})"
            strategy = operation.as_strategy(generation_mode=mode)
            test = _test(strategy, call, tally, label, examples)
            try:
                test()
            except Unsatisfiable:
                tally.unsatisfiable.append(label)  # no request of this mode exists
    return tally


def _test(strategy: Any, call: Call, tally: Tally, label: str, examples: int) -> Any:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def one(case: Any) -> None:
        tally.add(label, call(case))

    return one
