"""The dashboard in a real Chromium: a hub service, a private Mosquitto, and paho clients
playing the door nodes. Every wait is a condition with a deadline (Playwright's expect)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from playwright.sync_api import Browser, Page, expect

import hub.auth
from hub.auth import hash_password
from hub.web.server import ServiceThread
from protocol import topics
from protocol.events import Command, CommandReply, FacilityState, NodeState, NodeStatus
from runtime.listen import bind

from ..conftest import CHROMIUM

FACILITY = "mall-a"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
USERS = {"viewer1": "viewer", "guard1": "guard", "admin1": "admin"}
PASSWORD = "dashboard-pass-1"  # noqa: S105 - the test accounts' password
PEOPLE = "nik,name,status\n3171012345678901,Siti Rahma,green\n"
WAIT_MS = 5000
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
        facility={"capacity": 10, "name": "Mall A — Jakarta", "timezone": "Asia/Jakarta"},
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


def log_in(browser: Browser, service: ServiceThread, username: str) -> Page:
    # An English browser: the words below are the English catalog's.
    context = browser.new_context(viewport={"width": 1366, "height": 1000}, locale="en-GB")
    page = context.new_page()
    page.goto(f"{service.url}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/facilities/{FACILITY}", timeout=WAIT_MS)
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    return page


def online(node: Any, *, trust_age_s: float = 600.0) -> None:
    status = NodeStatus(
        state=NodeState.ONLINE,
        ts=datetime.now(UTC),
        trust_list_age_s=trust_age_s,
        status_list_age_s=120.0,
        direction="both",
    )
    node.publish(topics.node_status(FACILITY, node.node_id), status.dumps(), retain=True)


def answer_commands(clients: Factory, node: Any) -> Any:
    """Replies ok to ``open`` and records the passage as the node's manual event."""
    responder = clients(topics=[topics.node_cmd(FACILITY, node.node_id)])

    def hook(message: Any) -> None:
        command = Command.parse(message.payload)
        reply = CommandReply(id=command.id, ok=True, result={"released": True})
        responder.client.publish(topics.node_cmd_resp(FACILITY, node.node_id), reply.dumps(), qos=1)
        if command.cmd == "open":
            node.emit("manual", direction="entry", admit=True, detail=command.args["reason"])

    responder.hook = hook
    return responder


def test_a_guard_watches_acknowledges_and_checks_someone_in(
    browser: Browser, service: ServiceThread, clients: Factory
) -> None:
    main = clients()
    north = clients(node_id="north-1", door_id="north")
    online(main)
    online(north, trust_age_s=200_000.0)  # lists older than the 24 h limit
    answer_commands(clients, main)
    page = log_in(browser, service, "guard1")
    occupancy = page.locator("#occ-value")
    expect(occupancy).to_have_text("0")
    expect(page.locator("#occ-capacity")).to_have_text("/ 10")
    page.evaluate("window.__notReloaded = true")

    main.emit("entry", direction="entry", signal="green", admit=True, reason="ok")
    expect(occupancy).to_have_text("1", timeout=WAIT_MS)
    expect(page.locator("#decisions li.decision").first).to_contain_text("Entry · Green")
    expect(page.locator('#doors li[data-door="main"]')).to_contain_text("Online")
    expect(page.locator('#doors li[data-door="north"]')).to_contain_text("lists are 56 h old")

    main.emit("alarm", detail="forced_door", message="passage without a release")
    forced = page.locator("#alerts li.kind-forced_door")
    # Doors are named by their names, never by their ids.
    expect(forced).to_contain_text("Main entrance was forced open", timeout=WAIT_MS)
    expect(page.locator("#alerts li.kind-stale_lists")).to_contain_text("north-1")
    expect(page.locator("#alert-count")).to_have_text("2")
    forced.get_by_role("button", name="Acknowledge").click()
    expect(forced).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#alert-count")).to_have_text("1")
    (acked,) = service.hub.store.alerts(FACILITY, open_only=False, kind="forced_door")
    assert acked.acknowledged_by == "guard1"

    page.fill("#nik", "3171 0123 4567 8901")
    page.fill("#person-name", "siti rahma")
    page.click("#lookup-button")
    expect(page.locator("#verdict")).to_contain_text("GREEN", timeout=WAIT_MS)
    expect(page.locator("#verdict")).to_have_class("verdict v-green")
    page.click("#admit-button")
    expect(page.locator("#desk-message")).to_contain_text("The door is open", timeout=WAIT_MS)
    expect(page.locator("#admit-form")).to_be_hidden()
    # The node's manual event is what counts the visitor.
    expect(occupancy).to_have_text("2", timeout=WAIT_MS)
    expect(page.locator("#decisions li.decision").first).to_contain_text("Staff check-in")
    assert page.evaluate("window.__notReloaded") is True

    # A busier moment for the picture: nearly full, a refused pass, an open alert.
    for _ in range(6):
        main.emit("entry", direction="entry", signal="green", admit=True, reason="ok")
    main.emit("denied", signal="red", admit=False, reason="status_red", message="Not vaccinated")
    north.emit("exit", direction="exit", admit=True, reason="ok", detail="exit button")
    north.emit("denied", signal="black", admit=False, reason="status_black")
    north.emit("alarm", detail="black_pass", message="close contact")
    expect(occupancy).to_have_text("7", timeout=WAIT_MS)
    main.emit("entry", direction="entry", signal="yellow", admit=True, reason="ok")
    expect(occupancy).to_have_text("8", timeout=WAIT_MS)
    expect(page.locator("#occ-state")).to_contain_text("Nearly full")
    expect(page.locator("#occupancy-card")).to_have_class("card occupancy level-soft")
    expect(page.locator("#alerts li.kind-black_pass")).to_contain_text(
        "Black pass shown at North door", timeout=WAIT_MS
    )
    expect(page.locator('#doors li[data-door="north"]')).to_contain_text("Last: ALARM")
    # The picture is taken once the "new" highlights have faded.
    page.wait_for_function("() => document.getAnimations().length === 0", timeout=WAIT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.context.close()


def test_a_viewer_cannot_change_capacity_and_an_admin_can(
    browser: Browser, service: ServiceThread, clients: Factory
) -> None:
    main = clients()
    main.emit("alarm", detail="camera_failed")
    viewer = log_in(browser, service, "viewer1")
    expect(viewer.locator("#alerts li.alert")).to_contain_text("camera", timeout=WAIT_MS)
    assert viewer.locator("#capacity-form").count() == 0
    assert viewer.locator("#desk").count() == 0
    assert viewer.locator("#alerts button").count() == 0
    # Even a hand-made request from the viewer's own page is refused.
    status = viewer.evaluate(
        """async () => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const response = await fetch('/api/v1/facilities/mall-a/capacity', {
                method: 'PUT',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': token},
                body: JSON.stringify({capacity: 500}),
            });
            return [response.status, (await response.json()).error];
        }"""
    )
    assert status == [403, "forbidden"]
    assert service.hub.settings(FACILITY).effective_capacity == 10

    listener = clients(topics=[topics.facility_state(FACILITY)])
    admin = log_in(browser, service, "admin1")
    expect(admin.locator("#capacity-value")).to_have_value("10", timeout=WAIT_MS)
    admin.fill("#capacity-value", "4")
    admin.click("#capacity-save")
    expect(admin.locator("#capacity-message")).to_contain_text("Saved", timeout=WAIT_MS)
    # Both dashboards follow, live.
    expect(admin.locator("#occ-capacity")).to_have_text("/ 4", timeout=WAIT_MS)
    expect(viewer.locator("#occ-capacity")).to_have_text("/ 4", timeout=WAIT_MS)
    listener.wait_for(
        lambda: FacilityState.parse(listener.last(topics.facility_state(FACILITY))).capacity == 4,
        what="the nodes get capacity 4",
    )
    viewer.context.close()
    admin.context.close()
