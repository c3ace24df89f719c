"""A facility's registration in a real Chromium against ``pintu registry serve``: the PIC
registers and follows the request, the operator verifies one request and rejects another
with a reason the PIC then reads. Bad input, a missing CSRF token and the wrong kind of
account change nothing. Every page passes axe-core and fits 360 px."""

from __future__ import annotations

import contextlib

import httpx
from playwright.sync_api import Browser, Page, expect

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

PIC_PASSWORD = "the pic's long password"  # noqa: S105 - a test account's password


def register(page: Page, server: Server, name: str, email: str) -> str:
    """Fill the form as a PIC would; the request number the answer shows."""
    page.goto(server.url + "/register")
    page.fill("#name", name)
    page.select_option("#type", "market")
    page.fill("#address", "Jl. Pasar Baru 12, Bandung")
    page.fill("#capacity", "250")
    page.fill("#pic_name", "Budi Santoso")
    page.fill("#pic_email", email)
    page.click("main button[type=submit]")
    page.wait_for_url("**/requests/**")
    return page.locator("#request-number").inner_text()


def test_the_front_page_and_a_registration_with_bad_input_then_good(
    browser: Browser, server: Server
) -> None:
    page = open_page(browser, server, "/")
    expect(page.locator("h1")).to_have_text("Pintu registry")
    assert page.get_by_role("link", name="Register a facility").count() >= 1
    check(page)
    page.get_by_role("link", name="Log in to the console").click()
    page.wait_for_url("**/console/login")
    check(page)

    before = len(server.facilities())
    page.goto(server.url + "/register")
    check(page)
    page.fill("#name", "   ")
    page.fill("#capacity", "lots")
    page.fill("#pic_email", "not an address")
    page.click("main button[type=submit]")
    expect(page.locator("#form-problems")).to_be_visible()
    expect(page.locator("#name-problem")).to_contain_text("facility's name")
    expect(page.locator("#capacity-problem")).to_contain_text("whole number")
    expect(page.locator("#pic_email-problem")).to_contain_text("name@example.com")
    expect(page.locator("#type-problem")).to_contain_text("kind of facility")
    # What was typed stays in the form.
    expect(page.locator("#capacity")).to_have_value("lots")
    check(page)
    assert len(server.facilities()) == before

    number = register(page, server, "Pasar Kosambi", "budi@kosambi.example")
    expect(page.locator("#request-state")).to_have_text("Waiting for verification")
    expect(page.get_by_role("status")).to_contain_text("Your request was received")
    check(page)
    (stored,) = [f for f in server.facilities() if f["id"] == number]
    assert (stored["name"], stored["capacity"], stored["state"]) == (
        "Pasar Kosambi",
        250,
        "requested",
    )
    page.context.close()


def test_the_operator_verifies_one_request_and_rejects_another_with_a_reason(
    browser: Browser, server: Server
) -> None:
    pic = open_page(browser, server, "/register")
    accepted = register(pic, server, "Klinik Sehat", "sari@klinik.example")
    refused = register(pic, server, "Toko Nama Salah", "sari@klinik.example")

    operator = open_page(browser, server, "/console/requests")
    operator.wait_for_url("**/console/login?next=/console/requests")
    log_in(operator, server, OPERATOR, PASSWORD)
    operator.wait_for_url("**/console/requests")
    check(operator)
    item = operator.locator(f'#pending li[data-id="{refused}"]')
    expect(item).to_contain_text("Toko Nama Salah")
    # A rejection needs a reason: the browser asks for one (and the server, below).
    item.get_by_role("button", name="Reject").click()
    expect(item.locator("textarea:invalid")).to_have_count(1)
    assert {f["id"]: f["state"] for f in server.facilities()}[refused] == "requested"
    item = operator.locator(f'#pending li[data-id="{refused}"]')
    item.get_by_label("Reason for a rejection").fill("The name does not match the permit.")
    item.get_by_role("button", name="Reject").click()
    expect(operator.locator("#rejected")).to_contain_text(refused)
    expect(operator.locator(f'#pending li[data-id="{refused}"]')).to_have_count(0)

    operator.locator(f'#pending li[data-id="{accepted}"]').get_by_role(
        "button", name="Verify"
    ).click()
    link = operator.locator("#activation-link")
    expect(link).to_contain_text(f"/activate/{accepted}?token=ra_")
    check(operator)
    expect(operator.locator(f'#waiting li[data-id="{accepted}"]')).to_have_count(1)

    pic.goto(f"{server.url}/requests/{refused}")
    expect(pic.locator("#request-state")).to_have_text("Rejected")
    expect(pic.locator("#request-reason")).to_have_text("The name does not match the permit.")
    check(pic)
    pic.goto(f"{server.url}/requests/{accepted}")
    expect(pic.locator("#request-state")).to_contain_text("Verified")
    pic.context.close()
    operator.context.close()


def test_the_pages_speak_indonesian_by_default(browser: Browser, server: Server) -> None:
    page = open_page(browser, server, "/register", locale="id-ID")
    expect(page.locator("html")).to_have_attribute("lang", "id-ID")
    expect(page.locator("h1")).to_have_text("Daftarkan fasilitas")
    page.get_by_role("link", name="English").click()
    expect(page.locator("h1")).to_have_text("Register a facility")
    page.context.close()


def test_writes_without_the_csrf_token_or_by_the_wrong_account_change_nothing(
    server: Server,
) -> None:
    with contextlib.ExitStack() as stack:
        check_refusals(server, stack)


def closing(stack: contextlib.ExitStack, client: httpx.Client) -> httpx.Client:
    stack.callback(client.close)
    return client


def check_refusals(server: Server, stack: contextlib.ExitStack) -> None:
    before = server.facilities()
    anonymous = closing(stack, browserless(server))
    form = {
        "name": "Forged",
        "type": "shop",
        "address": "Jl. Palsu 1",
        "capacity": "10",
        "pic_name": "Nobody",
        "pic_email": "nobody@forged.example",
    }
    r = anonymous.post("/register", data=form)
    assert r.status_code == 403
    assert "form had expired" in r.text
    # The token of another session is no better.
    other = closing(stack, browserless(server))
    stolen = csrf_of(other.get("/register").text)
    r = anonymous.post("/register", data={**form, "csrf_token": stolen})
    assert r.status_code == 403
    assert server.facilities() == before

    target = server.public(
        "POST",
        "/facilities/requests",
        json={**form, "capacity": 10, "name": "Warung Target"},
    )["id"]
    operator = closing(stack, http_login(server, OPERATOR, PASSWORD))
    r = operator.post(f"/console/requests/{target}/verify", data={"csrf_token": "wrong"})
    assert r.status_code == 403
    r = operator.post(f"/console/requests/{target}/reject", data={"reason": "no token"})
    assert r.status_code == 403
    # With the token, a rejection without a reason is refused in words.
    token = csrf_of(operator.get("/console/requests").text)
    r = operator.post(
        f"/console/requests/{target}/reject", data={"csrf_token": token, "reason": "  "}
    )
    assert r.status_code == 422
    assert "Give the reason" in r.text
    # Not logged in: refused before anything is read.
    r = anonymous.post(f"/console/requests/{target}/verify", data={"csrf_token": "x"})
    assert r.status_code == 401

    # A PIC's session may not verify or reject.
    pic_facility = server.public(
        "POST",
        "/facilities/requests",
        json={**form, "capacity": 10, "name": "Warung PIC", "pic_email": "pic@warung.example"},
    )["id"]
    activation = server.api("POST", f"/facilities/{pic_facility}/verify")["activation_token"]
    server.public(
        "POST",
        f"/facilities/{pic_facility}/activate",
        json={"token": activation, "password": PIC_PASSWORD},
    )
    pic = closing(stack, http_login(server, "pic@warung.example", PIC_PASSWORD))
    page = pic.get("/console/requests")
    assert page.status_code == 403
    token = csrf_of(pic.get("/").text)
    r = pic.post(f"/console/requests/{target}/verify", data={"csrf_token": token})
    assert r.status_code == 403
    states = {f["id"]: f["state"] for f in server.facilities()}
    assert states[target] == "requested"

    # Logging out ends the registry session itself.
    token = csrf_of(operator.get("/console/requests").text)
    assert operator.post("/console/logout", data={"csrf_token": token}).status_code == 303
    assert operator.get("/console/requests").status_code == 303
