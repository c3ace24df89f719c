"""Every page of the hub as people in Indonesia see it, in a real Chromium.

- No word from the catalogs is left in English on any page, in any state reached here
  (desk verdicts, errors, alerts, confirmations), with ``Accept-Language: id``.
- The guard's desk is in the first screen even with 20 open alerts, on a desk screen and
  on a phone; the screenshots of the guard's and the admin's dashboards are kept in
  ``artifacts/screens``.
- No page scrolls sideways at 360, 390 or 430 px.
- axe-core finds nothing serious or critical on any page.

One browser for the module; one hub for each test.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from argon2 import PasswordHasher
from babel.dates import format_date
from babel.messages.pofile import read_po
from playwright.sync_api import Browser, Page, expect

import hub.auth
from hub.auth import hash_password
from hub.web.server import ServiceThread
from runtime.i18n import po_path
from runtime.listen import bind

from ..conftest import CHROMIUM
from ..layout import overflow
from . import axe

FACILITY = "mall-a"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screens"
USERS = {"viewer1": "viewer", "guard1": "guard", "admin1": "admin"}
PASSWORD = "screens-pass-1"  # noqa: S105 - the test accounts' password
PEOPLE = "nik,name,status\n3171012345678901,Siti Rahma,green\n3171012345678902,Budi,black\n"
WAIT_MS = 5000
DESK, PHONE = (1280, 800), (390, 844)
Factory = Callable[..., Any]

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"
)


@pytest.fixture
def service(
    make_config: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServiceThread]:
    monkeypatch.setattr(
        hub.auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE, encoding="utf-8")
    config = make_config(
        facility={
            "capacity": 10,
            "name": "Pasar Baru Bandung",
            "timezone": "Asia/Jakarta",
            "doors": [
                {"id": "main", "name": "Pintu Utama", "direction": "entry", "nodes": ["main-1"]},
                {"id": "north", "name": "Pintu Utara", "direction": "both", "nodes": ["north-1"]},
                {"id": "back", "name": "Pintu Belakang", "direction": "exit", "nodes": ["back-1"]},
            ],
            "zones": [],
        },
        web={"secret_key_file": str(tmp_path / "web-secret")},
        registry={"kind": "local", "path": str(people)},
    )
    thread = ServiceThread(config, sock=bind("127.0.0.1", 0)).start()
    for username, role in USERS.items():
        thread.hub.store.add_user(username, hash_password(PASSWORD), role)  # type: ignore[arg-type]
    try:
        yield thread
    finally:
        thread.stop()


def report(request: pytest.FixtureRequest, line: str) -> None:
    """A measured figure in the test run's output, past the output capture."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


def open_page(
    browser: Browser, service: ServiceThread, size: tuple[int, int], locale: str = "id-ID"
) -> Page:
    # The browser's locale is what it sends as Accept-Language.
    context = browser.new_context(viewport={"width": size[0], "height": size[1]}, locale=locale)
    page = context.new_page()
    page.goto(f"{service.url}/login")
    return page


def log_in(page: Page, service: ServiceThread, username: str) -> Page:
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/facilities/{FACILITY}", timeout=WAIT_MS)
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    return page


def raise_alerts(service: ServiceThread, count: int) -> None:
    """``count`` open alerts of three kinds at two doors, as a busy morning leaves them."""
    store = service.hub.store
    for i in range(count):
        kind, node, door = [
            ("black_pass", "main-1", "main"),
            ("forced_door", "north-1", "north"),
            ("camera_failed", "main-1", "main"),
        ][i % 3]
        store.add_alert(FACILITY, kind, f"{kind} {i}", node_id=node, door_id=door)


# --- no English left -------------------------------------------------------------------
def english_patterns() -> tuple[list[re.Pattern[str]], list[str]]:
    """What each catalog entry looks like in English, where Indonesian says it otherwise:
    whole-text patterns (placeholders match anything) and longer phrases to find inside."""
    with po_path("id").open("rb") as handle:
        catalog = read_po(handle, locale="id")
    whole: list[re.Pattern[str]] = []
    inside: list[str] = []
    for message in catalog:
        if not message.id:
            continue
        for english in message.id if isinstance(message.id, tuple) else (message.id,):
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            if english in strings:
                continue  # the same in both languages ("Alarm", "Admin")
            parts = re.split(r"\{\w+\}|%\(\w+\)s", english)
            whole.append(re.compile(".+?".join(re.escape(p) for p in parts)))
            if len(parts) == 1 and len(english) >= 14:
                inside.append(english)
    return whole, inside


TEXTS_JS = """() => {
    const texts = [];
    const walker = document.createTreeWalker(document.documentElement, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        const parent = walker.currentNode.parentElement;
        if (parent && ['SCRIPT', 'STYLE'].includes(parent.tagName)) continue;
        const text = walker.currentNode.textContent.trim();
        if (text) texts.push(text);
    }
    for (const node of document.querySelectorAll('[aria-label],[title],[placeholder],[alt]')) {
        for (const name of ['aria-label', 'title', 'placeholder', 'alt']) {
            const value = node.getAttribute(name);
            if (value) texts.push(value.trim());
        }
    }
    texts.push(document.title);
    return texts;
}"""


def english_left(page: Page) -> list[str]:
    whole, inside = english_patterns()
    found = []
    texts: list[str] = page.evaluate(TEXTS_JS)
    pieces = {p.strip(" ✓✕⊘⚠!?·()") for t in texts for p in re.split(r" · |\n", t)}
    for piece in pieces | set(texts):
        if any(pattern.fullmatch(piece) for pattern in whole):
            found.append(piece)
    everything = "\n".join(texts)
    found += [phrase for phrase in inside if phrase in everything]
    return sorted(set(found))


def test_every_page_speaks_indonesian_and_nothing_is_left_in_english(
    browser: Browser, service: ServiceThread, clients: Factory
) -> None:
    main = clients(node_id="main-1", door_id="main")
    north = clients(node_id="north-1", door_id="north")
    page = open_page(browser, service, DESK)
    assert page.locator("html").get_attribute("lang") == "id-ID"
    expect(page.locator("button[type=submit]")).to_have_text("Masuk")
    assert english_left(page) == []
    page.fill("#username", "guard1")
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    expect(page.locator(".form-error")).to_contain_text("Nama pengguna atau kata sandi salah")
    assert english_left(page) == []

    raise_alerts(service, 4)  # straight into the store: the page reads them as it loads
    log_in(page, service, "guard1")
    for kind, signal, reason in [
        ("entry", "green", "ok"),
        ("entry", "yellow", "ok"),
        ("denied", "red", "status_red"),
        ("denied", "black", "status_black"),
        ("denied", None, "expired"),
    ]:
        fields = {"signal": signal} if signal else {}
        main.emit(kind, direction="entry", admit=kind == "entry", reason=reason, **fields)
    north.emit("exit", direction="exit", admit=True, reason="ok")
    north.emit("alarm", detail="forced_door", message="passage without a release")
    expect(page.locator("#decisions li.decision")).to_have_count(7, timeout=WAIT_MS)
    expect(page.locator("#alerts li.kind-forced_door")).to_contain_text(
        "Pintu Utara dibuka paksa", timeout=WAIT_MS
    )
    expect(page.locator("#decisions")).to_contain_text("Masuk · Hijau · Pintu Utama")
    expect(page.locator("#decisions")).to_contain_text("Merah: belum vaksin")
    expect(page.locator("#doors")).to_contain_text("Terakhir: ALARM pukul", timeout=WAIT_MS)
    assert english_left(page) == []

    # The desk: a verdict, then a new lookup clears it before its own answer arrives.
    page.fill("#nik", "3171 0123 4567 8901")
    page.fill("#person-name", "siti rahma")
    page.click("#lookup-button")
    expect(page.locator("#verdict")).to_contain_text("HIJAU", timeout=WAIT_MS)
    expect(page.locator("#verdict")).to_contain_text("Vaksin lengkap: silakan masuk.")
    assert english_left(page) == []
    page.fill("#nik", "12")  # the browser refuses this: the last verdict must go
    page.click("#lookup-button")
    expect(page.locator("#desk-result")).to_be_hidden()
    page.fill("#nik", "3171012345678902")
    page.fill("#person-name", "Budi")
    page.click("#lookup-button")
    expect(page.locator("#verdict")).to_contain_text("HITAM", timeout=WAIT_MS)
    expect(page.locator("#admit-form")).to_be_hidden()
    page.fill("#nik", "3171012345678999")
    page.click("#lookup-button")
    expect(page.locator("#verdict")).to_contain_text("Tidak ditemukan", timeout=WAIT_MS)
    assert english_left(page) == []
    page.locator("#alerts li.kind-black_pass button").click()
    expect(page.locator("#alerts li.kind-black_pass")).to_have_count(0, timeout=WAIT_MS)
    page.context.close()

    # The admin: the capacity form's plain errors and its confirmation, and a missing page.
    admin = log_in(open_page(browser, service, DESK), service, "admin1")
    expect(admin.locator("#capacity-value")).to_have_value("10", timeout=WAIT_MS)
    admin.fill("#capacity-value", "2000000")
    admin.click("#capacity-save")
    message = admin.locator("#capacity-message")
    expect(message).to_contain_text("bilangan bulat dari 0 sampai 1.000.000")
    assert "Input should be" not in message.inner_text()
    admin.fill("#capacity-value", "0")
    admin.click("#capacity-save")
    expect(admin.locator("#capacity-confirm")).to_be_visible()
    expect(admin.locator("#capacity-confirm")).to_contain_text("Kapasitas 0 menutup pintu masuk")
    assert english_left(admin) == []
    admin.click("#capacity-confirm-no")
    expect(message).to_have_text("Tidak ada yang diubah.")
    assert service.hub.settings(FACILITY).effective_capacity == 10
    admin.goto(f"{service.url}/facilities/nowhere")
    expect(admin.locator("h1")).to_have_text("Tidak ditemukan")
    assert english_left(admin) == []
    admin.goto(f"{service.url}/no/such/page")
    expect(admin.locator("main")).to_contain_text("Halaman ini tidak ada.")
    assert english_left(admin) == []
    admin.context.close()


def test_a_full_facility_shows_at_the_lookup_and_closing_entry_is_confirmed(
    browser: Browser, service: ServiceThread, clients: Factory
) -> None:
    main = clients(node_id="main-1", door_id="main")
    guard = log_in(open_page(browser, service, PHONE), service, "guard1")
    for _ in range(10):
        main.emit("entry", direction="entry", signal="green", admit=True, reason="ok")
    expect(guard.locator("#occ-value")).to_have_text("10", timeout=WAIT_MS)
    guard.fill("#nik", "3171012345678901")
    guard.fill("#person-name", "Siti Rahma")
    guard.click("#lookup-button")
    expect(guard.locator("#verdict")).to_contain_text("HIJAU", timeout=WAIT_MS)
    # Known before anyone presses Admit: there is no Admit to press.
    expect(guard.locator("#desk-message")).to_contain_text("Kapasitas penuh")
    expect(guard.locator("#admit-form")).to_be_hidden()

    admin = log_in(open_page(browser, service, DESK), service, "admin1")
    expect(admin.locator("#capacity-value")).to_have_value("10", timeout=WAIT_MS)
    admin.fill("#capacity-value", "8")  # under the 10 inside: entry closes at once
    admin.click("#capacity-save")
    expect(admin.locator("#capacity-confirm")).to_contain_text("Ada 10 orang di dalam")
    admin.click("#capacity-confirm-yes")
    expect(admin.locator("#capacity-message")).to_contain_text("Tersimpan", timeout=WAIT_MS)
    assert service.hub.settings(FACILITY).effective_capacity == 8
    admin.fill("#capacity-value", "40")  # opens entry: no question asked
    admin.click("#capacity-save")
    expect(admin.locator("#capacity-message")).to_contain_text("kapasitas 40", timeout=WAIT_MS)
    expect(admin.locator("#capacity-confirm")).to_be_hidden()
    # The guard's screen follows: no longer full, the verdict may now admit.
    expect(guard.locator("#occ-capacity")).to_have_text("/ 40", timeout=WAIT_MS)
    expect(guard.locator("#admit-form")).to_be_visible()
    guard.context.close()
    admin.context.close()


def test_the_language_menu_and_an_english_browser(browser: Browser, service: ServiceThread) -> None:
    page = open_page(browser, service, DESK, locale="en-GB")
    expect(page.locator("button[type=submit]")).to_have_text("Log in")
    page.get_by_role("link", name="Bahasa Indonesia").click()
    expect(page.locator("button[type=submit]")).to_have_text("Masuk")
    log_in(page, service, "viewer1")
    expect(page.locator("#occ-title")).to_have_text("Di dalam sekarang")
    assert page.locator("html").get_attribute("lang") == "id-ID"
    page.context.close()


# --- the guard's first screen, screenshots, phones --------------------------------------
@pytest.mark.parametrize("size", [DESK, PHONE], ids=["1280", "390"])
def test_the_guard_sees_the_desk_first_with_20_open_alerts(
    browser: Browser, service: ServiceThread, size: tuple[int, int], request: pytest.FixtureRequest
) -> None:
    raise_alerts(service, 20)
    page = log_in(open_page(browser, service, size), service, "guard1")
    expect(page.locator("#alert-count")).to_have_text("20", timeout=WAIT_MS)
    # Grouped by kind and door, each with its count and one button for all of them.
    groups = page.locator("#alerts li.alert")
    expect(groups).to_have_count(3)
    black = page.locator("#alerts li.kind-black_pass")
    expect(black).to_contain_text("Kode hitam ditunjukkan di Pintu Utama")
    expect(black.get_by_role("button")).to_have_text("Tandai semua ditangani (7)")
    button = page.locator("#lookup-button").bounding_box()
    assert button is not None
    desk = page.locator("#desk").bounding_box()
    assert desk is not None
    line = (
        f"guard's screen at {size[0]}x{size[1]} px with 20 open alerts: the desk starts at "
        f"{desk['y']:.0f} px, its Check button ends at {button['y'] + button['height']:.0f} px"
    )
    report(request, line)
    assert button["y"] + button["height"] <= size[1], line
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"guard-id-{size[0]}.png"))
    black.get_by_role("button").click()
    expect(page.locator("#alert-count")).to_have_text("13", timeout=WAIT_MS)
    assert len(service.hub.store.alerts(FACILITY, kind="black_pass")) == 0
    page.context.close()


@pytest.mark.parametrize("size", [DESK, PHONE], ids=["1280", "390"])
def test_the_admins_dashboard_in_indonesian(
    browser: Browser, service: ServiceThread, size: tuple[int, int]
) -> None:
    raise_alerts(service, 3)
    page = log_in(open_page(browser, service, size), service, "admin1")
    expect(page.locator("#capacity-value")).to_have_value("10", timeout=WAIT_MS)
    expect(page.locator("#chart path.line")).to_have_count(1, timeout=WAIT_MS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"admin-id-{size[0]}.png"), full_page=True)
    # An earlier day, drawn on request, titled by its date in Indonesian.
    yesterday = datetime.now(ZoneInfo("Asia/Jakarta")).date() - timedelta(days=1)
    page.fill("#history-day", yesterday.isoformat())
    page.click("#history-show")
    month = format_date(yesterday, "MMMM", locale="id")
    expect(page.locator("#chart-title")).to_contain_text(month, timeout=WAIT_MS)
    expect(page.locator("#chart circle.now")).to_have_count(0)  # no "now" on a past day
    page.context.close()


PAGES = {
    "login": ("", None),
    "guard": ("guard1", None),
    "admin": ("admin1", None),
    "viewer": ("viewer1", None),
    "missing": ("viewer1", "/facilities/nowhere"),
    "no-such-page": ("", "/no/such/page"),
}


def visit(browser: Browser, service: ServiceThread, name: str, size: tuple[int, int]) -> Page:
    user, path = PAGES[name]
    page = open_page(browser, service, size)
    if user:
        log_in(page, service, user)
    if path:
        page.goto(service.url + path)
    return page


def test_visits_the_registry_refuses_are_shown_with_its_reason(
    browser: Browser, service: ServiceThread
) -> None:
    reason = "pushes stopped: 403 forbidden: this token is not the hub token of the facility"
    service.hub.store.add_alert(FACILITY, "visits_refused", reason, coalesce=True)
    page = log_in(open_page(browser, service, PHONE), service, "admin1")
    alert = page.locator("#alerts li.kind-visits_refused")
    expect(alert).to_contain_text("Registri menolak kunjungan dari Pasar Baru Bandung")
    expect(alert).to_contain_text(f"Jawaban registri: {reason}.")
    page.context.close()


@pytest.mark.parametrize("name", PAGES)
def test_no_page_scrolls_sideways_on_a_phone(
    browser: Browser, service: ServiceThread, name: str, request: pytest.FixtureRequest
) -> None:
    raise_alerts(service, 6)
    page = visit(browser, service, name, (360, 740))
    widths = []
    for width in (360, 390, 430):
        page.set_viewport_size({"width": width, "height": 800})
        page.wait_for_function(f"() => window.innerWidth === {width}", timeout=WAIT_MS)
        wide = overflow(page)
        assert wide[0] <= wide[1], f"{name} at {width} px is {wide[0]} px wide: {wide[2]}"
        widths.append(f"{width} px: {wide[0]} px wide")
    report(request, f"{name} page on a phone: " + ", ".join(widths))
    page.context.close()


@pytest.mark.skipif(not axe.available(), reason="axe-core is not installed: run make install")
@pytest.mark.parametrize("name", PAGES)
def test_axe_finds_nothing_serious_on_any_page(
    browser: Browser, service: ServiceThread, name: str, request: pytest.FixtureRequest
) -> None:
    raise_alerts(service, 3)
    results = {}
    for size in (DESK, PHONE):
        page = visit(browser, service, name, size)
        if name in ("guard", "admin", "viewer"):
            expect(page.locator("#alerts li.alert")).to_have_count(3, timeout=WAIT_MS)
        results[size[0]] = axe.check(page)
        page.context.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    for width, result in results.items():
        counts = {
            impact: sum(v["impact"] == impact for v in result["violations"])
            for impact in ("critical", "serious", "moderate", "minor")
        }
        line = (
            f"axe-core {axe.version()} on {name} at {width} px: {result['passes']} rules "
            f"passed; findings {counts}"
        )
        report(request, line)
        assert axe.severe(result) == [], f"{line}: {axe.severe(result)}"
