"""The visitor's wallet in a real Chromium on a phone's screen, against ``pintu registry
serve``: a link puts the pass on the phone and the QR code shown is the pass; offline the
wallet still shows it; a status changed at the registry arrives by itself once online; a
used or expired link gets its own page; a second phone retires the first; an operator
makes the link in the console."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect

from protocol import passes
from protocol.status import Status
from protocol.trust import TrustList
from registry import wallet
from registry.config import load_config
from registry.service import Registry

from .pages import (
    OPERATOR,
    PASSWORD,
    WAIT_MS,
    Server,
    browserless,
    check,
    log_in,
    needs_chromium,
)

pytestmark = needs_chromium

NIK, NAME = "3174054512900001", "Siti Rahayu"
OTHER_NIK, OTHER_NAME = "3174054512900002", "Agus Salim"


@pytest.fixture(scope="module", autouse=True)
def persons(server: Server) -> None:
    for nik, name in ((NIK, NAME), (OTHER_NIK, OTHER_NAME)):
        server.api(
            "POST", "/persons", json={"nik": nik, "name": name, "status": "green", "doses": 2}
        )


def new_link(server: Server, nik: str = NIK, age_s: float = 0) -> str:
    """A wallet link, as ``pintu registry issue-pass --link`` makes it (issued ``age_s``
    seconds ago)."""
    registry = Registry.open(
        load_config(server.config_path), make_key=False, clock=lambda: time.time() - age_s
    )
    try:
        return wallet.issue_link(registry, nik, "test", base=server.url).url
    finally:
        registry.close()


@pytest.fixture
def phones(browser: Browser) -> Iterator[list[BrowserContext]]:
    """New phones (browser contexts at 390x844), closed after the test."""
    made: list[BrowserContext] = []
    yield made
    for context in made:
        context.close()


def phone(browser: Browser, phones: list[BrowserContext], locale: str = "en-GB") -> Page:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, locale=locale, service_workers="allow"
    )
    phones.append(context)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    return page


def kept(page: Page) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(page.evaluate("() => localStorage.getItem('pintu.wallet')"))
    return found


def shown_code(page: Page) -> str:
    """The text of the QR code on the screen, read from a screenshot as a camera would."""
    png = page.locator("#qr").screenshot()
    with Image.open(io.BytesIO(png)) as img:
        codes = zxingcpp.read_barcodes(img)
    assert len(codes) == 1, f"{len(codes)} codes on the screen"
    return str(codes[0].text)


def trust(server: Server) -> TrustList:
    return TrustList.load(load_config(server.config_path).keys_dir / "trust.json")


def activated(browser: Browser, phones: list[BrowserContext], server: Server) -> Page:
    page = phone(browser, phones)
    page.goto(new_link(server))
    page.wait_for_url("**/wallet/")
    expect(page.locator("#card")).to_be_visible()
    return page


def test_a_link_puts_the_pass_on_the_phone_offline_too_and_it_follows_the_status(
    browser: Browser, server: Server, phones: list[BrowserContext]
) -> None:
    page = activated(browser, phones, server)
    expect(page.locator("#card")).to_have_attribute("data-status", "green")
    expect(page.locator("#status-word")).to_have_text("Green")
    expect(page.locator("#holder")).to_have_text(NAME)
    expect(page.locator("#brightness")).to_contain_text("brightness")
    text = shown_code(page)
    held = kept(page)
    assert text == held["pass"]["text"]
    verdict = passes.verify(text, trust(server))
    assert verdict.ok and verdict.pass_ is not None and verdict.pass_.status is Status.GREEN
    assert NIK not in json.dumps(held)
    # The token is gone from the address bar and the history.
    assert "token" not in page.url
    width = page.locator("#qr svg").bounding_box()
    assert width is not None and width["width"] >= 350
    check(page)

    # Offline, the wallet opens from the phone alone.
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    page.context.set_offline(True)
    page.reload()
    expect(page.locator("#card")).to_have_attribute("data-status", "green")
    expect(page.locator("#offline")).to_be_visible()
    assert shown_code(page) == text

    # The registry turns the person black; back online, the wallet shows it untouched.
    server.api("POST", "/persons", json={"nik": NIK, "name": NAME, "status": "black", "doses": 2})
    page.context.set_offline(False)
    expect(page.locator("#card")).to_have_attribute("data-status", "black", timeout=WAIT_MS)
    expect(page.locator("#status-word")).to_have_text("Black")
    black = passes.verify(shown_code(page), trust(server))
    assert black.ok and black.pass_ is not None and black.pass_.status is Status.BLACK
    server.api("POST", "/persons", json={"nik": NIK, "name": NAME, "status": "green", "doses": 2})


def test_a_used_or_expired_link_gets_its_own_page(
    browser: Browser, server: Server, phones: list[BrowserContext]
) -> None:
    used = new_link(server, OTHER_NIK)
    activated_page = phone(browser, phones)
    activated_page.goto(used)
    activated_page.wait_for_url("**/wallet/")
    expired = new_link(server, OTHER_NIK, age_s=25 * 3600)
    with browserless(server) as client:
        r = client.get(used.removeprefix(server.url))
        assert r.status_code == 410 and "This link was used already" in r.text
        assert "PINTU1:" not in r.text
        r = client.get(expired.removeprefix(server.url))
        assert r.status_code == 410 and "This link has expired" in r.text
        r = client.get("/wallet/activate?token=wl_made-up")
        assert r.status_code == 404 and "This link is not known" in r.text
    page = phone(browser, phones)
    page.goto(used)
    expect(page.locator("#link-used")).to_be_visible()
    check(page)
    page.goto(expired)
    expect(page.locator("#link-expired")).to_be_visible()
    assert page.evaluate("() => localStorage.getItem('pintu.wallet')") is None


def test_a_second_phone_retires_the_first(
    browser: Browser, server: Server, phones: list[BrowserContext]
) -> None:
    first = activated(browser, phones, server)
    second = activated(browser, phones, server)
    expect(second.locator("#card")).to_have_attribute("data-state", "valid")
    # The first phone's next check (here: the wallet opened again) says the pass moved.
    first.reload()
    expect(first.locator("#card")).to_have_attribute("data-state", "moved")
    expect(first.locator("#status-word")).to_have_text("Moved to another phone")
    expect(first.locator("#qr")).to_be_hidden()
    check(first)
    assert shown_code(second) == kept(second)["pass"]["text"]


def test_the_wallet_speaks_indonesian_by_default(
    browser: Browser, server: Server, phones: list[BrowserContext]
) -> None:
    page = phone(browser, phones, locale="fr-FR")
    page.goto(new_link(server, OTHER_NIK))
    page.wait_for_url("**/wallet/")
    expect(page.locator("#status-word")).to_have_text("Hijau")
    assert (page.locator("html").get_attribute("lang") or "").startswith("id")
    manifest = page.evaluate("() => fetch('/wallet/manifest.webmanifest').then(r => r.json())")
    assert manifest["start_url"] == "/wallet/" and {i["sizes"] for i in manifest["icons"]} >= {
        "192x192",
        "512x512",
    }
    r = httpx.get(server.url + "/wallet/icon-512.png", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    r = httpx.get(server.url + "/wallet/sw.js", timeout=10)
    assert "javascript" in r.headers["content-type"]
    assert "script-src 'self'" in r.headers["content-security-policy"]


def test_an_operator_makes_a_link_in_the_console(
    browser: Browser, server: Server, phones: list[BrowserContext]
) -> None:
    desk = phone(browser, phones)
    log_in(desk, server, OPERATOR, PASSWORD)
    desk.goto(server.url + "/console/persons")
    desk.fill("#nik", OTHER_NIK)
    desk.fill("#person-name", OTHER_NAME)
    desk.fill("#reason", "visitor asks for a pass on the phone")
    desk.click("#find-person button[type=submit]")
    desk.click("#wallet-link button[type=submit]")
    url = desk.locator("#wallet-link-url").inner_text().strip()
    assert url.startswith(server.url + "/wallet/activate?token=wl_")
    png = desk.locator("#wallet-link-qr").screenshot()
    with Image.open(io.BytesIO(png)) as img:
        assert [c.text for c in zxingcpp.read_barcodes(img)] == [url]
    check(desk)
    page = phone(browser, phones)
    page.goto(url)
    page.wait_for_url("**/wallet/")
    expect(page.locator("#holder")).to_have_text(OTHER_NAME)


def test_an_expired_or_unknown_pass_is_never_shown_as_a_colour(
    browser: Browser, server: Server, phones: list[BrowserContext]
) -> None:
    page = activated(browser, phones, server)
    # Offline, past its expiry: the kept pass says so, and no code is shown.
    page.context.set_offline(True)
    page.evaluate(
        """() => {
            const kept = JSON.parse(localStorage.getItem('pintu.wallet'));
            kept.pass.expires_at = '2020-01-01T00:00:00Z';
            localStorage.setItem('pintu.wallet', JSON.stringify(kept));
        }"""
    )
    page.reload()
    expect(page.locator("#card")).to_have_attribute("data-state", "expired")
    expect(page.locator("#status-word")).to_have_text("Expired")
    expect(page.locator("#band")).not_to_have_class("band status-green")
    expect(page.locator("#qr")).to_be_hidden()
    # A credential the registry does not know: not valid, once the wallet asks.
    page.evaluate(
        """() => {
            const kept = JSON.parse(localStorage.getItem('pintu.wallet'));
            kept.credential = 'wc_not-a-credential';
            localStorage.setItem('pintu.wallet', JSON.stringify(kept));
        }"""
    )
    page.context.set_offline(False)
    expect(page.locator("#card")).to_have_attribute("data-state", "revoked")
    expect(page.locator("#status-word")).to_have_text("Not valid")
    expect(page.locator("#qr")).to_be_hidden()


def test_the_first_load_is_light(
    browser: Browser, server: Server, phones: list[BrowserContext]
) -> None:
    page = phone(browser, phones)
    sizes: list[int] = []
    page.on("response", lambda response: sizes.append(len(response.body())))
    page.goto(new_link(server, OTHER_NIK))
    page.wait_for_url("**/wallet/")
    expect(page.locator("#card")).to_be_visible()
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    # Everything the phone fetched: both pages, script, style, manifest, icons, the
    # exchange and the first refresh (the service worker's own fetches included).
    assert sum(sizes) < 150_000, sizes
