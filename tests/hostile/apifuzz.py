"""Drive an HTTP API from its OpenAPI document with schemathesis, as a logged-in user.

``run(schema, call, examples)`` generates ``examples`` requests per operation and mode
(data that fits the schema, and data that does not), sends each through ``call`` and
checks what a client would notice: never an unhandled error (a 500, or a 5xx the
operation's document does not list), and every 4xx and 5xx says why (a JSON body with an
``error`` code). A listed 5xx is a part that is away, not a fault of the service: a door
that does not answer an "open" is a 504, as documented. It returns a tally and the
failures found, never raising mid-run, so one report lists every operation that misbehaved.
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
    by_operation: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    unsatisfiable: list[str] = field(default_factory=list)

    def add(self, label: str, response: Any, documented: frozenset[int] = frozenset()) -> None:
        self.requests += 1
        status = int(response.status_code)
        self.by_status[status] += 1
        self.by_operation[(label, status)] += 1
        if status == 500 or (status > 500 and status not in documented):
            self._fail(label, status, response)
        elif status >= 400 and not _has_reason(response):
            self._fail(label, status, response, "an error without a reason")

    def _fail(self, label: str, status: int, response: Any, why: str = "server error") -> None:
        text = bytes(response.content[:300]).decode("utf-8", "replace")
        if len(self.failures) < 50:
            self.failures.append(f"{label}: {status} ({why}): {text}")

    @property
    def server_errors(self) -> int:
        """Unhandled errors: every 500, whatever the document says."""
        return self.by_status[500]


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
    known: dict[str, str] | None = None,
) -> Tally:
    """``known`` path parameters (a facility that exists, say) are used for half of the
    data that fits the schema, so those requests reach the handlers, not only the 404s."""
    tally = Tally()
    skipped = {(method.upper(), path) for method, path in skip}
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in skipped:
            continue
        for mode in modes:
            label = f"{operation.method.upper()} {operation.path} ({mode.value})"
            strategy = operation.as_strategy(generation_mode=mode)
            names = {p.name for p in operation.path_parameters}
            fixed = {k: v for k, v in (known or {}).items() if k in names}
            if fixed and mode is GenerationMode.POSITIVE:
                strategy = strategy | operation.as_strategy(
                    generation_mode=mode, path_parameters=fixed
                )
            test = _test(strategy, call, tally, label, examples, _documented(operation))
            try:
                test()
            except Unsatisfiable:
                tally.unsatisfiable.append(label)  # no request of this mode exists
    return tally


def _documented(operation: Any) -> frozenset[int]:
    responses = operation.definition.raw.get("responses", {})
    return frozenset(int(code) for code in responses if str(code).isdigit())


def _test(
    strategy: Any, call: Call, tally: Tally, label: str, examples: int, documented: frozenset[int]
) -> Any:
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
        tally.add(label, call(case), documented)

    return one


def run_stateful(
    schema: Any,
    prepare: Callable[[Any], None],
    call_kwargs: dict[str, Any],
    examples: int,
    steps: int = 8,
) -> Tally:
    """Sequences of linked calls (an id one response gives, used by the next request), as
    schemathesis infers the links from the document; the same checks on every response."""
    tally = Tally()

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            prepare(case)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return call_kwargs

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            tally.add(f"{case.method} {case.path} (stateful)", response)

    Workflow.run(
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    return tally
