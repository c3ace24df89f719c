"""A PIC's whole path in a real Chromium against ``pintu registry serve``: register, be
verified by the operator, activate from the link, add an entrance and an exit, rename a
door, download both posters (the PNG's code is the door's address), replace the hub
token and see the visits the hub sent. Bad input, a missing CSRF token and another PIC's
session change nothing. Every page passes axe-core and fits 360 px."""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from protocol.poster import door_address

from .pages import (
    OPERATOR,
    PASSWORD,
    Server,
    browserless,
    check,
    csrf_of,
    http_login,
    log_in,
    needs_chromium,
    open_page,
)

pytestmark = needs_chromium

PIC_EMAIL = "rina@pasar.example"
PIC_PASSWORD = "rina's long password"  # noqa: S105 - a test account's password


def doors_of(server: Server, facility_id: str) -> dict[str, dict[str, str]]:
    found = server.api("GET", f"/facilities/{facility_id}/doors")["doors"]
    return {d["door_id"]: d for d in found}


def add_door(page: Page, door_id: str, name: str, direction: str, kind: str) -> None:
    page.fill("#door_id", door_id)
    page.fill("#door_name", name)
    page.select_option("#direction", direction)
    page.select_option("#kind", kind)
    page.click("#add-door button[type=submit]")


def activate(browser: Browser, server: Server) -> tuple[Page, str, str]:
    """Register, verify and activate through the pages; the PIC's page, the facility id
    and the hub token shown at activation."""
    pic = open_page(browser, server, "/register")
    pic.fill("#name", "Pasar Cihapit")
    pic.select_option("#type", "market")
    pic.fill("#address", "Jl. Cihapit 8, Bandung")
    pic.fill("#capacity", "120")
    pic.fill("#pic_name", "Rina Kartika")
    pic.fill("#pic_email", PIC_EMAIL)
    pic.click("main button[type=submit]")
    pic.wait_for_url("**/requests/**")
    facility_id = pic.locator("#request-number").inner_text()

    operator = open_page(browser, server, "/console/login")
    log_in(operator, server, OPERATOR, PASSWORD)
    operator.locator(f'#pending li[data-id="{facility_id}"]').get_by_role(
        "button", name="Verify"
    ).click()
    link = operator.locator("#activation-link").inner_text().strip()
    operator.context.close()

    pic.goto(link)
    check(pic)
    pic.fill("#password", PIC_PASSWORD)
    pic.fill("#password_again", "something else entirely")
    pic.click("main button[type=submit]")
    expect(pic.locator("#activate-error")).to_contain_text("The two passwords differ")
    assert server.api("GET", f"/facilities/{facility_id}")["state"] == "verified"
    check(pic)
    # The form keeps the link's token: a second try needs no new link.
    pic.fill("#password", PIC_PASSWORD)
    pic.fill("#password_again", PIC_PASSWORD)
    pic.click("main button[type=submit]")
    expect(pic.locator("h1")).to_have_text("The facility is active")
    expect(pic.locator("#username")).to_have_text(PIC_EMAIL)
    hub_token = pic.locator("#hub-token").inner_text().strip()
    assert hub_token.startswith("rh_")
    check(pic)
    return pic, facility_id, hub_token


def test_a_pic_activates_adds_doors_and_downloads_their_posters(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    pic, facility_id, first_token = activate(browser, server)
    pic.get_by_role("link", name="Log in to the console").click()
    log_in(pic, server, PIC_EMAIL, PIC_PASSWORD)
    pic.wait_for_url("**/console/facilities")
    check(pic)
    pic.get_by_role("link", name="Pasar Cihapit").click()
    pic.wait_for_url(f"**/console/facilities/{facility_id}")
    expect(pic.locator("#no-doors")).to_be_visible()
    expect(pic.locator("#sync .visits")).to_have_text("0")
    expect(pic.locator("#sync .statuses-read")).to_have_text("never")
    check(pic)

    add_door(pic, "gate in!", "", "entrance", "camera")
    expect(pic.locator("#door_id-problem")).to_contain_text("short id")
    expect(pic.locator("#name-problem")).to_contain_text("name")
    expect(pic.locator("#door_id")).to_have_value("gate in!")
    check(pic)
    assert doors_of(server, facility_id) == {}

    add_door(pic, "north-in", "North entrance", "entrance", "camera")
    expect(pic.locator("#console-notice")).to_contain_text("North entrance")
    add_door(pic, "north-out", "North exit", "exit", "poster")
    expect(pic.locator('#doors li[data-door="north-out"]')).to_contain_text("Poster only")
    add_door(pic, "south", "South gate", "both", "both")
    expect(pic.locator('#doors li[data-door="south"]')).to_contain_text("Camera and poster")
    add_door(pic, "north-in", "Again", "both", "camera")
    expect(pic.locator("#door_id-problem")).to_contain_text("already")
    doors = doors_of(server, facility_id)
    assert {d: (v["direction"], v["kind"]) for d, v in doors.items()} == {
        "north-in": ("entrance", "camera"),
        "north-out": ("exit", "poster"),
        "south": ("both", "both"),
    }

    exit_door = pic.locator('#doors li[data-door="north-out"]')
    exit_door.get_by_label("New name").fill("Exit to the car park")
    exit_door.get_by_role("button", name="Rename").click()
    expect(pic.locator("#console-notice")).to_contain_text("Exit to the car park")
    assert doors_of(server, facility_id)["north-out"]["name"] == "Exit to the car park"
    check(pic)

    for door_id in ("north-in", "north-out"):
        item = pic.locator(f'#doors li[data-door="{door_id}"]')
        with pic.expect_download() as png:
            item.get_by_role("link", name="(PNG)").click()
        path = tmp_path / f"{door_id}.png"
        png.value.save_as(path)
        with Image.open(io.BytesIO(path.read_bytes())) as img:
            codes = zxingcpp.read_barcodes(img)
        assert [c.text for c in codes] == [door_address(server.url, facility_id, door_id)]
        with pic.expect_download() as pdf:
            item.get_by_role("link", name="(PDF)").click()
        pdf_path = tmp_path / f"{door_id}.pdf"
        pdf.value.save_as(pdf_path)
        assert pdf_path.read_bytes().startswith(b"%PDF-")

    # The hub pushes a visit with its token; the page shows it arrived.
    now = datetime.now(UTC).replace(microsecond=0)
    visit = {
        "visit_id": "v-1",
        "facility_id": facility_id,
        "subject": "0" * 24,
        "door_id": "north-in",
        "check_in": (now - timedelta(minutes=30)).isoformat(),
        "check_out": now.isoformat(),
    }
    server.api("POST", "/visits", token=first_token, json=[visit])
    server.api("GET", "/statuses", token=first_token)
    # A batch through a door the registry does not know is refused, and counted.
    refused = httpx.post(
        f"{server.url}/api/v1/visits",
        json=[{**visit, "visit_id": "v-2", "door_id": "south-in"}],
        headers={"Authorization": f"Bearer {first_token}"},
        timeout=10,
    )
    assert refused.status_code == 422
    pic.reload()
    expect(pic.locator("#sync .visits")).to_have_text("1")
    expect(pic.locator("#sync .last-sync")).to_contain_text(str(now.year))
    expect(pic.locator("#sync .statuses-read")).not_to_have_text("never")
    expect(pic.locator("#sync .trust-read")).to_have_text("never")
    expect(pic.locator("#sync .refused")).to_contain_text("south-in")
    assert pic.locator("#sync .refused").inner_text().startswith("1")

    pic.click("#issue-hub-token")
    new_token = pic.locator("#hub-token").inner_text().strip()
    assert new_token.startswith("rh_") and new_token != first_token
    check(pic)
    me = httpx.get(
        f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {first_token}"}, timeout=10
    )
    assert me.status_code == 401
    assert server.api("GET", "/me", token=new_token)["facility_id"] == facility_id
    pic.context.close()


def test_door_writes_need_the_csrf_token_and_the_facility_s_own_pic(server: Server) -> None:
    facility = server.public(
        "POST",
        "/facilities/requests",
        json={
            "name": "Toko Buku",
            "type": "shop",
            "address": "Jl. Braga 3",
            "capacity": 40,
            "pic_name": "Ayu",
            "pic_email": "ayu@toko.example",
        },
    )["id"]
    token = server.api("POST", f"/facilities/{facility}/verify")["activation_token"]
    server.public(
        "POST",
        f"/facilities/{facility}/activate",
        json={"token": token, "password": PIC_PASSWORD},
    )
    other = server.public(
        "POST",
        "/facilities/requests",
        json={
            "name": "Toko Lain",
            "type": "shop",
            "address": "Jl. Braga 5",
            "capacity": 40,
            "pic_name": "Eko",
            "pic_email": "eko@lain.example",
        },
    )["id"]
    token = server.api("POST", f"/facilities/{other}/verify")["activation_token"]
    server.public(
        "POST", f"/facilities/{other}/activate", json={"token": token, "password": PIC_PASSWORD}
    )
    door = {"door_id": "front", "name": "Front", "direction": "both", "kind": "camera"}
    with contextlib.ExitStack() as stack:
        ayu = http_login(server, "ayu@toko.example", PIC_PASSWORD)
        stack.callback(ayu.close)
        eko = http_login(server, "eko@lain.example", PIC_PASSWORD)
        stack.callback(eko.close)
        anonymous = browserless(server)
        stack.callback(anonymous.close)

        r = ayu.post(f"/console/facilities/{facility}/doors", data=door)
        assert r.status_code == 403
        r = ayu.post(f"/console/facilities/{facility}/hub-token", data={"csrf_token": "x"})
        assert r.status_code == 403
        r = anonymous.post(f"/console/facilities/{facility}/doors", data=door)
        assert r.status_code == 401
        # Another facility's PIC finds nothing here, and changes nothing.
        assert eko.get(f"/console/facilities/{facility}").status_code == 404
        eko_token = csrf_of(eko.get("/console/facilities").text)
        r = eko.post(
            f"/console/facilities/{facility}/doors", data={**door, "csrf_token": eko_token}
        )
        assert r.status_code == 404
        r = eko.get(f"/console/facilities/{facility}/doors/front/poster.png")
        assert r.status_code == 404
        r = eko.post(f"/console/facilities/{facility}/hub-token", data={"csrf_token": eko_token})
        assert r.status_code == 404
        assert doors_of(server, facility) == {}
        # A PIC may not open the operators' pages.
        assert ayu.get("/console/requests").status_code == 403

        ayu_token = csrf_of(ayu.get(f"/console/facilities/{facility}").text)
        r = ayu.post(
            f"/console/facilities/{facility}/doors", data={**door, "csrf_token": ayu_token}
        )
        assert r.status_code == 200
        assert list(doors_of(server, facility)) == ["front"]
        r = ayu.post(
            f"/console/facilities/{facility}/doors/front/rename",
            data={"csrf_token": ayu_token, "name": "   "},
        )
        assert r.status_code == 422
        assert doors_of(server, facility)["front"]["name"] == "Front"
