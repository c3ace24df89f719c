"""The operators' work on persons: find one by NIK and name, change the status, issue a
printable pass or a one-time link that puts the pass on their phone. Every look-up is a
personal read (limited, and audited with the reason the operator gives); every change
carries a reason into the audit trail."""

from __future__ import annotations

import base64
import io
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import segno
from babel.dates import format_timedelta
from starlette.responses import Response

from protocol.passes import MAX_DOSES
from protocol.status import Status
from registry import wallet
from registry.console.session import Page, field, logged_in
from registry.errors import InvalidInput, LoginThrottled, NotFound, RegistryError
from registry.records import Person
from registry.service import IssuedPass
from registry.wallet import IssuedLink

logger = logging.getLogger(__name__)

MAX_REASON = 200


def status_names(page: Page) -> dict[str, str]:
    _ = page._
    return {
        "green": _("Green: fully vaccinated"),
        "yellow": _("Yellow: one dose"),
        "red": _("Red: not vaccinated"),
        "black": _("Black: confirmed positive or close contact"),
    }


def when(page: Page, at: int | None) -> str:
    if at is None:
        return ""
    moment = datetime.fromtimestamp(at, UTC)
    return page.lang.format_datetime(moment, UTC, "medium") + " UTC"


def ago(page: Page, at: int | None) -> str:
    """How long ago ``at`` was, in words of the page's language ("" for never)."""
    if at is None:
        return ""
    seconds = max(0, page.registry.now() - at)
    return format_timedelta(timedelta(seconds=seconds), add_direction=True, locale=page.lang.locale)


def _persons_page(
    page: Page,
    *,
    status: int = 200,
    error: str | None = None,
    values: dict[str, str] | None = None,
    person: Person | None = None,
    searched: bool = False,
    notice: str | None = None,
) -> Response:
    context: dict[str, Any] = {
        "error": error,
        "values": values or {},
        "person": person,
        "searched": searched,
        "notice": notice,
        "statuses": status_names(page),
        "max_doses": MAX_DOSES,
        "changed_at": when(page, person.changed_at) if person else "",
    }
    return page.render("persons.html", context, status)


@logged_in("operator")
async def persons_page(page: Page) -> Response:
    return _persons_page(page)


def _read_person_form(page: Page, form: Any) -> tuple[dict[str, str], str | None]:
    """The NIK, name and reason of a form, and what is wrong with them (None if nothing)."""
    values = {
        "nik": field(form, "nik", 40).strip(),
        "name": " ".join(field(form, "name", 200).split()),
        "reason": " ".join(field(form, "reason", MAX_REASON + 1).split()),
    }
    if not values["nik"] or not values["name"]:
        return values, page._("Enter the NIK and the name as on the person's ID card.")
    if not values["reason"] or len(values["reason"]) > MAX_REASON:
        return values, page._("Give the reason for this look-up (at most 200 characters).")
    return values, None


def _refused(page: Page, err: RegistryError, values: dict[str, str]) -> Response:
    """The persons page saying why a look-up or a change did not happen."""
    if isinstance(err, InvalidInput):
        text = page._("A NIK has 16 digits; spaces and dashes between groups are ignored.")
        return _persons_page(page, status=422, error=text, values=values)
    if isinstance(err, NotFound):
        text = page._("No person has this NIK and name. Check both and search again.")
        return _persons_page(page, status=404, error=text, values=values, searched=True)
    status = 429 if isinstance(err, LoginThrottled) else 503
    return _persons_page(page, status=status, error=page.error_text(err), values=values)


async def _named(page: Page, values: dict[str, str]) -> Person:
    """The person with the form's NIK and name (a personal read, audited with the reason);
    ``NotFound`` when there is none: the console acts only on a person named right."""
    found = await page.run(
        page.registry.lookup, values["nik"], values["name"], page.reader(values["reason"])
    )
    if found is None:
        raise NotFound("no person with this NIK and name")
    return found


@logged_in("operator")
async def find_person(page: Page) -> Response:
    form = await page.request.form()
    values, problem = _read_person_form(page, form)
    if problem is not None:
        return _persons_page(page, status=422, error=problem, values=values)
    try:
        person = await _named(page, values)
    except NotFound:
        return _persons_page(page, values=values, person=None, searched=True)
    except RegistryError as err:
        return _refused(page, err, values)
    return _persons_page(page, values=values, person=person, searched=True)


@logged_in("operator")
async def change_status(page: Page) -> Response:
    form = await page.request.form()
    values, problem = _read_person_form(page, form)
    wanted = field(form, "status", 10)
    doses_text = field(form, "doses", 3).strip()
    if problem is None and wanted not in ("green", "yellow", "red", "black"):
        problem = page._("Choose the new status.")
    if problem is None and not (doses_text.isdigit() and 0 <= int(doses_text) <= MAX_DOSES):
        problem = page._("Enter the doses as a whole number from 0 to %(n)s.") % {"n": MAX_DOSES}
    if problem is not None:
        return _persons_page(page, status=422, error=problem, values=values)
    try:
        found = await _named(page, values)
        person, _outcome = await page.run(
            page.registry.set_person,
            values["nik"],
            found.name,
            Status.parse(wanted),
            int(doses_text),
            page.caller,
            values["reason"],
        )
    except RegistryError as err:
        return _refused(page, err, values)
    notice = page._("The status is now: %(status)s.") % {
        "status": status_names(page)[person.status.label]
    }
    return _persons_page(page, values=values, person=person, searched=True, notice=notice)


@logged_in("operator")
async def issue_pass(page: Page) -> Response:
    form = await page.request.form()
    values, problem = _read_person_form(page, form)
    if problem is not None:
        return _persons_page(page, status=422, error=problem, values=values)
    try:
        await _named(page, values)
        issued: IssuedPass = await page.run(page.registry.issue_pass, values["nik"], page.caller)
    except RegistryError as err:
        return _refused(page, err, values)
    qr = base64.b64encode(issued.qr_png(scale=8)).decode("ascii")
    return page.render(
        "pass.html",
        {
            "issued": issued,
            "qr": qr,
            "status_name": status_names(page)[issued.person.status.label],
            "issued_at": when(page, issued.issued_at),
            "expires_at": when(page, issued.expires_at),
        },
    )


@logged_in("operator")
async def wallet_link(page: Page) -> Response:
    """A one-time link (and its QR code) that puts the person's pass in their phone's
    wallet; using it retires the wallet of any phone activated before."""
    form = await page.request.form()
    values, problem = _read_person_form(page, form)
    if problem is not None:
        return _persons_page(page, status=422, error=problem, values=values)
    base = page.registry.config.public_url or str(page.request.base_url)
    try:
        await _named(page, values)
        link: IssuedLink = await page.run(
            wallet.issue_link, page.registry, values["nik"], page.caller, base
        )
    except RegistryError as err:
        return _refused(page, err, values)
    buffer = io.BytesIO()
    segno.make(link.url, error="m").save(buffer, kind="png", scale=6)
    response = page.render(
        "wallet_link.html",
        {
            "link": link,
            "qr": base64.b64encode(buffer.getvalue()).decode("ascii"),
            "expires_at": when(page, link.expires_at),
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response
