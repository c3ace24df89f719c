"""The operators' tracing: where a subject was over a window and who was there too, with a
reason that goes into the audit trail; the same answer as CSV to take away."""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.responses import Response

from registry.console.persons import when
from registry.console.session import Page, field, logged_in
from registry.errors import InvalidInput, RegistryError
from registry.service import DAY_S
from registry.tracing import Trace

logger = logging.getLogger(__name__)

_SUBJECT = re.compile(r"^[0-9a-f]{24}$")
MAX_REASON = 200


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


def _defaults(page: Page) -> dict[str, str]:
    today = datetime.fromtimestamp(page.registry.now(), UTC).date()
    window = page.registry.config.tracing_window_days
    return {
        "who": "",
        "from": (today - timedelta(days=window)).isoformat(),
        "to": today.isoformat(),
        "reason": "",
    }


def _tracing_page(
    page: Page,
    values: dict[str, str],
    *,
    status: int = 200,
    error: str | None = None,
    result: Trace | None = None,
) -> Response:
    context: dict[str, Any] = {"values": values, "error": error, "result": result}
    if result is not None:
        context["facilities"] = [
            {
                "name": f.name,
                "id": f.facility_id,
                "visits": [
                    (v.door_id, when(page, v.check_in), when(page, v.check_out)) for v in f.visits
                ],
                "contacts": sorted({o.other.subject for o in f.overlaps}),
            }
            for f in result.facilities
        ]
        context["contact_count"] = len(result.contacts)
    return page.render("tracing.html", context, status)


@logged_in("operator")
async def tracing_page(page: Page) -> Response:
    return _tracing_page(page, _defaults(page))


async def _trace(page: Page) -> tuple[dict[str, str], Trace | Response]:
    """The form's query run, or the page that says what is wrong with it."""
    form = await page.request.form()
    values = {
        "who": "".join(field(form, "who", 40).split()).replace("-", ""),
        "from": field(form, "from", 10),
        "to": field(form, "to", 10),
        "reason": " ".join(field(form, "reason", MAX_REASON + 1).split()),
    }
    _ = page._
    start, end = _day(values["from"]), _day(values["to"])
    problem = None
    if not values["who"]:
        problem = _("Enter the subject id (24 characters) or the NIK of the person to trace.")
    elif start is None or end is None:
        problem = _("Enter the first and the last day of the window.")
    elif end < start:
        problem = _("The last day comes before the first.")
    elif not values["reason"] or len(values["reason"]) > MAX_REASON:
        problem = _("Give the reason for this tracing (at most 200 characters).")
    if problem is not None or start is None or end is None:
        return values, _tracing_page(page, values, status=422, error=problem)
    try:
        who = values["who"].lower()
        subject = who if _SUBJECT.match(who) else page.registry.subject_of(who)
        first = int(datetime.combine(start, datetime.min.time(), UTC).timestamp())
        last = int(datetime.combine(end, datetime.min.time(), UTC).timestamp()) + DAY_S
        result = await page.run(
            page.registry.trace, subject, first, last, page.reader(values["reason"])
        )
    except InvalidInput:
        text = _("Enter the subject id (24 characters) or the NIK of the person to trace.")
        return values, _tracing_page(page, values, status=422, error=text)
    except RegistryError as err:
        return values, _tracing_page(page, values, status=429, error=page.error_text(err))
    return values, result


@logged_in("operator")
async def trace_submit(page: Page) -> Response:
    values, result = await _trace(page)
    if isinstance(result, Response):
        return result
    return _tracing_page(page, values, result=result)


@logged_in("operator")
async def trace_csv(page: Page) -> Response:
    _values, result = await _trace(page)
    if isinstance(result, Response):
        return result
    name = f"trace-{result.subject}.csv"
    return Response(
        result.to_csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
