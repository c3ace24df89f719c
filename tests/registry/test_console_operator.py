"""An operator's daily work in a real Chromium against ``pintu registry serve``: find a
person by NIK and name (with a reason, audited), change the status (the change is in the
feed a hub's next sync reads), print a pass, rotate and revoke signing keys after a
confirmation, trace a subject with a reason and export CSV, filter the audit log, see the
hubs. Without a reason, without the CSRF token or as a PIC, nothing changes."""

from __future__ import annotations

import base64
import contextlib
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from .pages import (
    OPERATOR,
    PASSWORD,
    Server,
    check,
    csrf_of,
    http_login,
    log_in,
    needs_chromium,
    open_page,
)

pytestmark = needs_chromium

NIK, NAME = "3174054512900001", "Siti Rahayu"
OTHER_NIK = "3174054512900002"
PIC_EMAIL = "joko@kantor.example"
PIC_PASSWORD = "joko's long password"  # noqa: S105 - a test account's password


@pytest.fixture(scope="module")
def world(server: Server) -> dict[str, Any]:
    """Two persons, an active facility with a door, and visits of both at once there."""
    server.api("POST", "/persons", json={"nik": NIK, "name": NAME, "status": "green", "doses": 2})
    other = server.api(
        "POST", "/persons", json={"nik": OTHER_NIK, "name": "Agus", "status": "green", "doses": 2}
    )
    facility = server.public(
        "POST",
        "/facilities/requests",
        json={
            "name": "Kantor Pos",
            "type": "government",
            "address": "Jl. Asia Afrika 1",
            "capacity": 80,
            "pic_name": "Joko",
            "pic_email": PIC_EMAIL,
        },
    )["id"]
    token = server.api("POST", f"/facilities/{facility}/verify")["activation_token"]
    hub = server.public(
        "POST",
        f"/facilities/{facility}/activate",
        json={"token": token, "password": PIC_PASSWORD},
    )["hub_token"]
    pic = server.api("POST", "/login", json={"username": PIC_EMAIL, "password": PIC_PASSWORD})
    server.api(
        "POST",
        f"/facilities/{facility}/doors",
        token=pic["token"],
        json={"door_id": "lobby", "name": "Lobby", "direction": "both"},
    )
    siti = server.api("POST", "/lookup", json={"nik": NIK, "name": NAME})["subject"]
    now = datetime.now(UTC).replace(microsecond=0)
    visits = [
        {
            "visit_id": f"v-{who}",
            "facility_id": facility,
            "subject": subject,
            "door_id": "lobby",
            "check_in": (now - timedelta(hours=2)).isoformat(),
            "check_out": (now - timedelta(hours=1)).isoformat(),
        }
        for who, subject in (("siti", siti), ("agus", other["subject"]))
    ]
    server.api("POST", "/visits", token=hub, json=visits)
    return {"facility": facility, "hub": hub, "siti": siti, "agus": other["subject"]}


def actions(server: Server, action: str) -> list[tuple[int, str, str, str, str]]:
    return [entry for entry in server.audit() if entry[2] == action]


def operator_page(browser: Browser, server: Server, path: str) -> Page:
    page = open_page(browser, server, "/console/login")
    log_in(page, server, OPERATOR, PASSWORD)
    page.goto(server.url + path)
    return page


def find(page: Page, nik: str, name: str, reason: str) -> None:
    page.fill("#nik", nik)
    page.fill("#person-name", name)
    page.fill("#reason", reason)
    page.click("#find-person button[type=submit]")


def test_an_operator_finds_a_person_changes_the_status_and_prints_a_pass(
    browser: Browser, server: Server, world: dict[str, Any]
) -> None:
    page = operator_page(browser, server, "/console/persons")
    check(page)
    lookups = len(actions(server, "person.lookup"))
    # The browser asks for a reason; so does the registry, and nothing is read without.
    page.fill("#nik", NIK)
    page.fill("#person-name", NAME)
    page.click("#find-person button[type=submit]")
    expect(page.locator("#reason:invalid")).to_have_count(1)
    assert len(actions(server, "person.lookup")) == lookups

    find(page, NIK, "Siti Lain", "desk check, wrong name")
    expect(page.locator("#not-found")).to_be_visible()
    find(page, "3174 0545 1290 0001", "siti rahayu", "phone lost at the gate")
    expect(page.locator("#person-status")).to_contain_text("Green")
    check(page)
    lookups_now = actions(server, "person.lookup")
    assert len(lookups_now) == lookups + 2
    assert lookups_now[-1][3] == world["siti"]
    assert "why: phone lost at the gate" in lookups_now[-1][4]

    before = server.api("GET", "/statuses", token=world["hub"])["next"]
    page.select_option("#status", "black")
    page.click("#change-status button[type=submit]")
    expect(page.locator("#console-notice")).to_contain_text("Black")
    expect(page.locator("#person-status")).to_have_attribute("data-status", "black")
    # What a hub's next sync reads: the change, after the cursor it had.
    feed = server.api("GET", f"/statuses?since={before}", token=world["hub"])
    assert [(c["subject"], c["status"]) for c in feed["changes"]] == [(world["siti"], "black")]
    (changed,) = actions(server, "person.updated")
    assert changed[4] == "black 2; why: phone lost at the gate"

    page.click("#issue-pass button[type=submit]")
    expect(page.locator("#pass-qr")).to_be_visible()
    check(page)
    source = page.locator("#pass-qr").get_attribute("src") or ""
    png = base64.b64decode(source.split(",", 1)[1])
    with Image.open(io.BytesIO(png)) as img:
        codes = zxingcpp.read_barcodes(img)
    assert [c.text for c in codes] == [page.locator("#pass-text").inner_text().strip()]
    page.context.close()


def test_keys_rotate_and_revoke_after_saying_what_stops_working(
    browser: Browser, server: Server
) -> None:
    page = operator_page(browser, server, "/console/keys")
    check(page)
    (first,) = [k["kid"] for k in server.api("GET", "/trust")["keys"]]
    page.click("#rotate")
    expect(page.locator("#consequences")).to_contain_text("keep working until they expire")
    check(page)
    page.get_by_role("link", name="Cancel").click()
    assert [k["kid"] for k in server.api("GET", "/trust")["keys"]] == [first]

    page.click("#rotate")
    page.click("#confirm")
    expect(page.locator("#console-notice")).to_contain_text("is now current")
    kids = {k["kid"]: k for k in server.api("GET", "/trust")["keys"]}
    (second,) = set(kids) - {first}
    expect(page.locator(f'#keys li[data-kid="{second}"] .key-state')).to_contain_text("Current")

    page.locator(f'#keys li[data-kid="{first}"]').get_by_role("button").click()
    expect(page.locator("#consequences")).to_contain_text("stops working at every door")
    check(page)
    page.click("#confirm")
    expect(page.locator(f'#keys li[data-kid="{first}"] .key-state')).to_contain_text("Revoked")
    assert {k["kid"]: k.get("revoked", False) for k in server.api("GET", "/trust")["keys"]} == {
        first: True,
        second: False,
    }
    page.context.close()


def test_tracing_with_a_reason_its_csv_the_audit_log_and_the_hubs(
    browser: Browser, server: Server, world: dict[str, Any], tmp_path: Path
) -> None:
    page = operator_page(browser, server, "/console/tracing")
    check(page)
    queries = len(actions(server, "tracing.query"))
    page.fill("#who", world["siti"])
    page.click("#trace button[type=submit] >> nth=0")
    expect(page.locator("#reason:invalid")).to_have_count(1)
    page.fill("#reason", "positive test 3 December")
    page.click("#trace button[type=submit] >> nth=0")
    expect(page.locator("#trace-result h2")).to_have_text("1 contact")
    expect(page.locator("#trace-result .contacts")).to_contain_text(world["agus"])
    check(page)
    with page.expect_download() as download:
        page.click("#export")
    path = tmp_path / "trace.csv"
    download.value.save_as(path)
    text = path.read_text(encoding="utf-8-sig")
    assert world["agus"] in text and world["facility"] in text
    traced = actions(server, "tracing.query")
    assert len(traced) == queries + 2
    assert traced[-1][3] == world["siti"] and "why: positive test 3 December" in traced[-1][4]

    page.goto(server.url + "/console/audit")
    check(page)
    page.select_option("#action", "tracing.query")
    page.click("#audit-filter button[type=submit]")
    rows = page.locator("#audit-rows li")
    expect(rows).to_have_count(len(traced))
    for action in rows.evaluate_all("(items) => items.map((li) => li.dataset.action)"):
        assert action == "tracing.query"
    page.fill("#text", "no such thing anywhere")
    page.click("#audit-filter button[type=submit]")
    expect(page.locator("#no-rows")).to_be_visible()

    page.goto(server.url + "/console/hubs")
    hub = page.locator(f'#hubs li[data-id="{world["facility"]}"]')
    expect(hub.locator(".visits")).to_have_text("2")
    # The hub read the status feed in the first test.
    expect(hub.locator(".statuses-read")).not_to_have_text("never")
    expect(hub.locator(".refused")).to_have_text("0")
    check(page)
    page.context.close()


def test_operator_writes_need_the_csrf_token_and_an_operator(
    server: Server, world: dict[str, Any]
) -> None:
    trust = server.api("GET", "/trust")
    with contextlib.ExitStack() as stack:
        operator = http_login(server, OPERATOR, PASSWORD)
        stack.callback(operator.close)
        pic = http_login(server, PIC_EMAIL, PIC_PASSWORD)
        stack.callback(pic.close)
        r = operator.post("/console/keys/rotate", data={"confirm": "yes"})
        assert r.status_code == 403
        r = operator.post(
            "/console/persons/status",
            data={"nik": NIK, "name": NAME, "reason": "x", "status": "red", "doses": "0"},
        )
        assert r.status_code == 403
        token = csrf_of(operator.get("/console/persons").text)
        # A status change needs a reason, like a look-up.
        r = operator.post(
            "/console/persons/status",
            data={"csrf_token": token, "nik": NIK, "name": NAME, "status": "red", "doses": "0"},
        )
        assert r.status_code == 422
        r = operator.post(
            "/console/tracing",
            data={"csrf_token": token, "who": world["siti"], "from": "2026-12-01", "to": "x"},
        )
        assert r.status_code == 422

        pic_token = csrf_of(pic.get(f"/console/facilities/{world['facility']}").text)
        for path in ("/console/persons", "/console/keys", "/console/tracing", "/console/audit"):
            assert pic.get(path).status_code == 403, path
        r = pic.post("/console/keys/rotate", data={"csrf_token": pic_token, "confirm": "yes"})
        assert r.status_code == 403
        r = pic.post(
            "/console/persons/status",
            data={
                "csrf_token": pic_token,
                "nik": NIK,
                "name": NAME,
                "reason": "x",
                "status": "red",
                "doses": "0",
            },
        )
        assert r.status_code == 403
    assert server.api("GET", "/trust") == trust
    found = server.api("POST", "/lookup", json={"nik": NIK, "name": NAME})
    assert found["status"] != "red"
