"""The hub's web side over real HTTP: a hub and its web server on one loop (as in
production), a private Mosquitto, paho clients playing the door nodes, httpx as the staff.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

import hub.auth
from hub.auth import hash_password
from hub.records import Role
from hub.store.sqlite import SqliteStore
from hub.web.api import OPERATIONS
from hub.web.server import ServiceThread
from pintu.cli import cli
from protocol import topics
from protocol.events import Command, CommandReply, FacilityState, NodeState, NodeStatus
from provisioning.mosquitto import Mosquitto, free_port
from runtime.listen import bind

FACILITY = "mall-a"
Factory = Callable[..., Any]
PASSWORDS = {"viewer1": "viewer-pass-1", "guard1": "guard-pass-1", "admin1": "admin-pass-1"}
ROLES: dict[str, Role] = {"viewer1": "viewer", "guard1": "guard", "admin1": "admin"}
PEOPLE = (
    "nik,name,status,subject\n"
    "3171012345678901,Siti Rahma,green,00112233445566778899aabb\n"
    "3171012345678902,Budi Santoso,black,\n"
    "3171012345678903,Dewi Lestari,yellow,\n"
)
MACHINE_PATHS = ("/api/", "/metrics", "/healthz", "/events")
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "hub.toml"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its real cost takes ~0.1 s a hash; the tests check logic, not cost."""
    monkeypatch.setattr(
        hub.auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )


class Web:
    """A running hub service, its users, and helpers to talk to it as staff."""

    def __init__(self, thread: ServiceThread) -> None:
        self.thread = thread
        self.url = thread.url
        self._clients: list[httpx.Client] = []
        store = thread.hub.store
        for username, password in PASSWORDS.items():
            store.add_user(username, hash_password(password), ROLES[username])

    @property
    def hub(self) -> Any:
        return self.thread.hub

    def client(self, language: str = "en") -> httpx.Client:
        """A browser-like client that asks for pages in ``language``."""
        client = httpx.Client(base_url=self.url, timeout=15, headers={"Accept-Language": language})
        self._clients.append(client)
        return client

    def login(self, username: str) -> tuple[httpx.Client, str]:
        """A client logged in as ``username`` and its CSRF token."""
        client = self.client()
        token = client.get("/api/v1/session").json()["csrf_token"]
        response = client.post(
            "/api/v1/session",
            json={"username": username, "password": PASSWORDS[username]},
            headers={"X-CSRF-Token": token},
        )
        assert response.status_code == 200, response.text
        return client, response.json()["csrf_token"]

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self.thread.stop()


@pytest.fixture
def web(make_config: Factory, tmp_path: Path) -> Iterator[Callable[..., Web]]:
    """``web(facility={...}, web={...})``: start a hub service; stopped after the test."""
    started: list[Web] = []
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE, encoding="utf-8")

    def start(**overrides: Any) -> Web:
        web_section = {"secret_key_file": str(tmp_path / "web-secret"), **overrides.pop("web", {})}
        config = make_config(
            web=web_section, registry={"kind": "local", "path": str(people)}, **overrides
        )
        thread = ServiceThread(config, sock=bind("127.0.0.1", 0)).start()
        running = Web(thread)
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()


def csrf(token: str) -> dict[str, str]:
    return {"X-CSRF-Token": token}


def state_of(listener: Any) -> FacilityState:
    state: FacilityState = FacilityState.parse(listener.last(topics.facility_state(FACILITY)))
    return state


def answering_node(clients: Factory, node: Any, *, answer: bool = True) -> Any:
    """Listens on ``node``'s command topic; if ``answer``, replies ok to ``open`` and then
    records the passage as the node's own manual event, as a real node does."""
    responder = clients(topics=[topics.node_cmd(FACILITY, node.node_id)])

    def hook(message: Any) -> None:
        if not answer:
            return
        command = Command.parse(message.payload)
        reply = CommandReply(id=command.id, ok=True, result={"released": True})
        responder.client.publish(topics.node_cmd_resp(FACILITY, node.node_id), reply.dumps(), qos=1)
        if command.cmd == "open":
            node.emit("manual", direction="entry", admit=True, detail=command.args["reason"])

    responder.hook = hook
    return responder


# --- accounts ----------------------------------------------------------------------------
def test_login_and_logout_with_the_api(web: Factory) -> None:
    running = web()
    client = running.client()
    assert client.get("/api/v1/facilities").status_code == 401
    session = client.get("/api/v1/session").json()
    assert session["user"] is None and session["csrf_token"]
    body = {"username": "guard1", "password": PASSWORDS["guard1"]}
    missing = client.post("/api/v1/session", json=body)
    assert missing.status_code == 403 and missing.json()["error"] == "csrf"
    wrong = client.post(
        "/api/v1/session",
        json={"username": "guard1", "password": "nope-nope"},
        headers=csrf(session["csrf_token"]),
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "login_failed"
    ok = client.post("/api/v1/session", json=body, headers=csrf(session["csrf_token"]))
    assert ok.status_code == 200
    assert (ok.json()["user"], ok.json()["role"]) == ("guard1", "guard")
    token = ok.json()["csrf_token"]
    assert token != session["csrf_token"], "the token is renewed at login"
    assert client.get("/api/v1/facilities").status_code == 200
    stolen = dict(client.cookies)
    assert client.delete("/api/v1/session", headers=csrf(token)).json()["user"] is None
    assert client.get("/api/v1/facilities").status_code == 401
    # A copy of the cookie taken before the logout is worth nothing after it.
    replay = running.client()
    replay.cookies.update(stolen)
    assert replay.get("/api/v1/facilities").status_code == 401
    actions = [(e.user, e.action) for e in running.hub.store.audit_log(limit=10)]
    assert ("guard1", "login") in actions and ("guard1", "logout") in actions
    assert ("guard1", "login.failed") in actions


def test_login_and_logout_with_the_forms(web: Factory) -> None:
    running = web()
    client = running.client()
    assert client.get("/").headers["location"] == "/login"
    page = client.get("/login")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    form = {"username": "viewer1", "password": "wrong-password", "csrf_token": token.group(1)}
    refused = client.post("/login", data=form)
    assert refused.status_code == 401 and "Wrong user name or password" in refused.text
    forged = client.post("/login", data={**form, "csrf_token": "forged"})
    assert forged.status_code == 403
    form["password"] = PASSWORDS["viewer1"]
    done = client.post("/login", data=form)
    assert done.status_code == 303 and done.headers["location"] == "/"
    cookie = done.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    dashboard = client.get(f"/facilities/{FACILITY}")
    assert dashboard.status_code == 200 and "Inside now" in dashboard.text
    assert 'id="desk"' not in dashboard.text and 'id="capacity"' not in dashboard.text
    assert client.get("/facilities/nowhere").status_code == 404
    page_token = re.search(r'name="csrf-token" content="([^"]+)"', dashboard.text)
    assert page_token is not None
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    out = client.post("/logout", data={"csrf_token": page_token.group(1)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get(f"/facilities/{FACILITY}").headers["location"] == "/login"


def test_pages_speak_the_chosen_language_and_the_menu_never_leads_away(web: Factory) -> None:
    running = web()
    english, indonesian = running.client("en-GB,en;q=0.9"), running.client("id-ID,id;q=0.9")
    assert "User name" in english.get("/login").text
    page = indonesian.get("/login")
    assert page.headers["content-language"] == "id"
    assert '<html lang="id-ID">' in page.text and "Nama pengguna" in page.text
    # A browser asking for neither gets the facility's default (Bahasa Indonesia).
    assert "Nama pengguna" in running.client("fr-FR").get("/login").text

    chosen = english.get("/language?lang=id&next=/login")
    assert chosen.status_code == 303 and chosen.headers["location"] == "/login"
    assert "pintu_lang=id" in chosen.headers["set-cookie"]
    assert "Nama pengguna" in english.get("/login").text  # the choice beats the browser
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "x" * 400):
        away = english.get("/language", params={"lang": "en", "next": target})
        assert away.headers["location"] == "/", target
    refused = running.client().get("/language?lang=klingon&next=/login")
    assert refused.status_code == 303 and "set-cookie" not in refused.headers


def form_login(client: httpx.Client, username: str) -> httpx.Response:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    form = {"username": username, "password": PASSWORDS[username], "csrf_token": token.group(1)}
    return client.post("/login", data=form)


def test_a_staff_accounts_language_follows_them_to_another_browser(web: Factory) -> None:
    running = web()
    desk = running.client("en-GB,en;q=0.9")
    assert form_login(desk, "guard1").status_code == 303
    desk.get(f"/language?lang=id&next=/facilities/{FACILITY}")
    assert running.hub.store.get_user("guard1").language == "id"
    # Another browser that asks for English: at login, the account's choice comes with it.
    tablet = running.client("en-GB,en;q=0.9")
    assert "User name" in tablet.get("/login").text
    logged_in = form_login(tablet, "guard1")
    assert "pintu_lang=id" in logged_in.headers["set-cookie"]
    page = tablet.get(f"/facilities/{FACILITY}")
    assert page.status_code == 200 and page.headers["content-language"] == "id"
    # Nobody logged in: the choice stays with the browser, no account changes.
    running.client().get("/language?lang=en&next=/login")
    assert running.hub.store.get_user("viewer1").language is None
    with pytest.raises(ValueError, match="unknown language"):
        running.hub.store.update_user("viewer1", language="klingon")


def test_an_admin_downloads_a_days_counts_as_csv(web: Factory, clients: Factory) -> None:
    running = web(facility={"timezone": "Asia/Jakarta"})
    node = clients()
    node.wait_acked([node.emit("entry", direction="entry", admit=True) for _ in range(2)])
    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Jakarta")).date()
    url = f"/facilities/{FACILITY}/counts.csv?day={today.isoformat()}"
    admin, _ = running.login("admin1")
    response = admin.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = response.content.decode("utf-8-sig").splitlines()
    assert rows[0] == "Hour,Inside at the end,Most inside"
    hour = datetime.now(UTC).astimezone(ZoneInfo("Asia/Jakarta")).strftime("%Y-%m-%d %H:00")
    assert rows[-1] == f"{hour},2,2"
    assert len(rows) == 1 + int(hour[-5:-3]) + 1  # every hour of the day so far
    admin.headers["Accept-Language"] = "id"
    assert admin.get(url).content.decode("utf-8-sig").startswith("Jam,")

    later = (today + timedelta(days=1)).isoformat()
    for bad in ("2026-13-01", "yesterday", later, "2020-01-01"):
        refused = admin.get(f"/facilities/{FACILITY}/counts.csv?day={bad}")
        assert refused.status_code == 400, bad
    viewer, _ = running.login("viewer1")
    assert viewer.get(url).status_code == 403
    assert running.client().get(url).headers["location"] == "/login"


def test_repeated_wrong_passwords_lock_the_name_out(web: Factory) -> None:
    running = web()
    client = running.client()
    token = client.get("/api/v1/session").json()["csrf_token"]
    for _ in range(5):
        response = client.post(
            "/api/v1/session",
            json={"username": "admin1", "password": "guessing-1"},
            headers=csrf(token),
        )
        assert response.status_code == 401
    # Now even the right password is refused for a while, without being checked.
    locked = client.post(
        "/api/v1/session",
        json={"username": "admin1", "password": PASSWORDS["admin1"]},
        headers=csrf(token),
    )
    assert locked.status_code == 429
    assert locked.json()["error"] == "too_many_attempts"
    assert int(locked.headers["retry-after"]) >= 1
    # Another user from the same address is not locked out by it.
    running.login("guard1")


# --- roles and CSRF ------------------------------------------------------------------------
def test_writes_without_the_csrf_token_are_refused(web: Factory) -> None:
    running = web()
    client, _ = running.login("admin1")
    for headers in ({}, csrf("not-the-token")):
        response = client.put(
            f"/api/v1/facilities/{FACILITY}/capacity", json={"capacity": 9}, headers=headers
        )
        assert response.status_code == 403
        assert response.json()["error"] == "csrf" and "X-CSRF-Token" in response.json()["detail"]
    assert client.get(f"/api/v1/facilities/{FACILITY}/capacity").json()["capacity"] == 3


def test_a_viewer_cannot_change_capacity(web: Factory, clients: Factory) -> None:
    running = web()
    listener = clients(topics=[topics.facility_state(FACILITY)])
    listener.wait_for(lambda: state_of(listener).capacity == 3, what="the initial state")
    client, token = running.login("viewer1")
    response = client.put(
        f"/api/v1/facilities/{FACILITY}/capacity", json={"capacity": 100}, headers=csrf(token)
    )
    assert response.status_code == 403
    assert response.json() == {
        "error": "forbidden",
        "detail": "This needs the admin role; you are a viewer.",
    }
    guard, guard_token = running.login("guard1")
    assert (
        guard.put(
            f"/api/v1/facilities/{FACILITY}/capacity",
            json={"capacity": 100},
            headers=csrf(guard_token),
        ).status_code
        == 403
    )
    assert client.get(f"/api/v1/facilities/{FACILITY}/capacity").json()["capacity"] == 3
    assert running.hub.store.facility_config(FACILITY).effective_capacity == 3
    assert state_of(listener).capacity == 3
    assert not [e for e in running.hub.store.audit_log() if e.action == "capacity.set"]


def test_an_admin_changes_capacity_and_the_nodes_get_it(
    web: Factory, clients: Factory, tmp_path: Path
) -> None:
    running = web(facility={"capacity": None, "capacity_percent": 30, "nominal_max": 10})
    listener = clients(topics=[topics.facility_state(FACILITY)])
    node = clients()
    client, token = running.login("admin1")
    url = f"/api/v1/facilities/{FACILITY}/capacity"
    response = client.put(url, json={"capacity": 1}, headers=csrf(token))
    assert response.status_code == 200, response.text
    assert response.json()["capacity"] == 1 and response.json()["mode"] == "absolute"
    listener.wait_for(lambda: state_of(listener).capacity == 1, what="retained capacity 1")
    node.wait_acked([node.emit("entry")])
    listener.wait_for(lambda: state_of(listener).full, what="full at 1 of 1")
    percent = client.put(
        url, json={"percent": 50, "soft_threshold_percent": 60}, headers=csrf(token)
    )
    assert percent.status_code == 200, percent.text
    assert percent.json() == {
        "facility_id": FACILITY,
        "capacity": 5,
        "mode": "percent",
        "capacity_percent": 50.0,
        "nominal_max": 10,
        "soft_threshold_percent": 60.0,
    }
    listener.wait_for(
        lambda: state_of(listener).capacity == 5 and not state_of(listener).full,
        what="room again at 1 of 5",
    )
    occupancy = client.get(f"/api/v1/facilities/{FACILITY}/occupancy").json()
    assert (occupancy["occupancy"], occupancy["capacity"], occupancy["full"]) == (1, 5, False)
    (entry,) = [e for e in running.hub.store.audit_log() if e.action == "capacity.set"][:1]
    assert entry.user == "admin1" and "50 % of 10 = 5" in entry.detail
    # Kept across a restart: the store has it, not just the running hub.
    facilities = running.hub.config.facilities
    running.close()
    with SqliteStore(tmp_path / "hub.db", facilities) as store:
        assert store.facility_config(FACILITY).effective_capacity == 5  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error", "field"),
    [
        (b"{not json", "application/json", 400, "bad_json", "body"),
        (b"[1, 2]", "application/json", 400, "bad_json", "body"),
        (b'{"capacity": 5}', "text/plain", 415, "unsupported_media_type", None),
        (b'{"capcity": 5}', "application/json", 422, "invalid", "capcity"),
        (b'{"capacity": "5"}', "application/json", 422, "invalid", "capacity"),
        (b'{"capacity": -1}', "application/json", 422, "invalid", "capacity"),
        (b'{"capacity": 5, "percent": 10}', "application/json", 422, "invalid", "capacity"),
        (b'{"percent": 10}', "application/json", 422, "invalid", "nominal_max"),
        (b"{}", "application/json", 422, "invalid", "capacity"),
    ],
)
def test_bad_input_is_refused_with_the_field_named_and_changes_nothing(
    web: Factory,
    body: bytes,
    content_type: str,
    status: int,
    error: str,
    field: str | None,
) -> None:
    running = web()
    client, token = running.login("admin1")
    response = client.put(
        f"/api/v1/facilities/{FACILITY}/capacity",
        content=body,
        headers={**csrf(token), "Content-Type": content_type},
    )
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    if field is not None:
        assert field in [d["field"] for d in response.json()["detail"]]
    assert running.hub.store.facility_config(FACILITY).effective_capacity == 3
    assert not [e for e in running.hub.store.audit_log() if e.action == "capacity.set"]


def test_corrections_and_resets_are_for_admins_and_validated(web: Factory) -> None:
    running = web()
    url = f"/api/v1/facilities/{FACILITY}/corrections"
    guard, guard_token = running.login("guard1")
    assert guard.post(url, json={"value": 2}, headers=csrf(guard_token)).status_code == 403
    admin, token = running.login("admin1")
    bad = admin.post(url, json={"value": 2, "zone_id": "roof"}, headers=csrf(token))
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "zone_id"
    assert admin.post(url, json={"value": -2}, headers=csrf(token)).status_code == 422
    assert running.hub.store.adjustments(FACILITY) == []
    done = admin.post(url, json={"value": 2, "note": "counted"}, headers=csrf(token))
    assert done.status_code == 200, done.text
    assert (done.json()["delta"], done.json()["user"], done.json()["occupancy"]["occupancy"]) == (
        2,
        "admin1",
        2,
    )
    reset = admin.post(f"/api/v1/facilities/{FACILITY}/reset", json={}, headers=csrf(token))
    assert reset.status_code == 200 and reset.json()["delta"] == -2
    listed = admin.get(f"/api/v1/facilities/{FACILITY}/adjustments").json()["adjustments"]
    assert [a["kind"] for a in listed] == ["reset", "correction"]
    assert admin.get("/api/v1/facilities/nowhere/occupancy").status_code == 404
    assert (
        admin.post("/api/v1/facilities/nowhere/reset", json={}, headers=csrf(token)).json()["error"]
        == "not_found"
    )


# --- alerts ------------------------------------------------------------------------------
def test_a_guard_acknowledges_an_alert(web: Factory, clients: Factory) -> None:
    running = web()
    node = clients()
    node.wait_acked([node.emit("alarm", detail="forced_door", message="passage without release")])
    viewer, viewer_token = running.login("viewer1")
    (alert,) = viewer.get(f"/api/v1/facilities/{FACILITY}/alerts").json()["alerts"]
    assert alert["kind"] == "forced_door" and alert["open"] is True
    assert "main" in alert["message"]
    url = f"/api/v1/alerts/{alert['id']}/ack"
    assert viewer.post(url, headers=csrf(viewer_token)).status_code == 403
    guard, token = running.login("guard1")
    acked = guard.post(url, headers=csrf(token))
    assert acked.status_code == 200
    assert acked.json()["acknowledged_by"] == "guard1" and acked.json()["open"] is False
    assert guard.get(f"/api/v1/facilities/{FACILITY}/alerts").json()["alerts"] == []
    every = guard.get(f"/api/v1/facilities/{FACILITY}/alerts?state=all").json()["alerts"]
    assert [a["id"] for a in every] == [alert["id"]]
    assert guard.post("/api/v1/alerts/999/ack", headers=csrf(token)).status_code == 404
    assert guard.post("/api/v1/alerts/abc/ack", headers=csrf(token)).status_code == 404


# --- the staff desk ----------------------------------------------------------------------
def test_a_lookup_with_the_wrong_name_is_not_found_and_audited(web: Factory) -> None:
    running = web()
    guard, token = running.login("guard1")
    url = f"/api/v1/facilities/{FACILITY}/checkins/lookup"
    answer = guard.post(
        url, json={"nik": "3171012345678901", "name": "Siti Aminah"}, headers=csrf(token)
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "found": False,
        "status": None,
        "reason": "no person with this NIK and name",
        "admissible": False,
        "lookup_id": None,
    }
    (entry,) = [e for e in running.hub.store.audit_log() if e.action == "desk.lookup"]
    assert (entry.user, entry.facility_id, entry.detail) == ("guard1", FACILITY, "not found")
    # The NIK and the name are never kept.
    dump = json.dumps([e.as_dict() for e in running.hub.store.audit_log()])
    assert "3171012345678901" not in dump and "Siti" not in dump
    bad = guard.post(url, json={"nik": "31710123456789", "name": "Siti"}, headers=csrf(token))
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "nik"
    letters = guard.post(url, json={"nik": "3171O12345678901", "name": "Siti"}, headers=csrf(token))
    assert letters.status_code == 422 and letters.json()["detail"][0]["field"] == "nik"
    viewer, viewer_token = running.login("viewer1")
    refused = viewer.post(
        url, json={"nik": "3171012345678901", "name": "Siti Rahma"}, headers=csrf(viewer_token)
    )
    assert refused.status_code == 403
    assert len([e for e in running.hub.store.audit_log() if e.action == "desk.lookup"]) == 1
    # The desk checks visitors in; it is not a way to sift the registry.
    wrong = {"nik": "3171012345678901", "name": "Someone Else"}
    for _ in range(19):
        assert guard.post(url, json=wrong, headers=csrf(token)).status_code == 200
    paced = guard.post(url, json=wrong, headers=csrf(token))
    assert paced.status_code == 429 and paced.json()["error"] == "too_many_lookups"
    assert int(paced.headers["retry-after"]) >= 1


def test_a_desk_check_in_opens_the_door_and_the_node_counts_it(
    web: Factory, clients: Factory
) -> None:
    running = web()
    node = clients()
    responder = answering_node(clients, node)
    guard, token = running.login("guard1")
    base = f"/api/v1/facilities/{FACILITY}"
    answer = guard.post(
        f"{base}/checkins/lookup",
        json={"nik": "3171 0123 4567 8901", "name": "  siti   RAHMA "},
        headers=csrf(token),
    ).json()
    assert (answer["found"], answer["status"], answer["admissible"]) == (True, "green", True)
    assert set(answer) == {"found", "status", "reason", "admissible", "lookup_id"}
    admitted = guard.post(
        f"{base}/checkins",
        json={"lookup_id": answer["lookup_id"], "door_id": "main"},
        headers=csrf(token),
    )
    assert admitted.status_code == 200, admitted.text
    assert admitted.json()["admitted"] is True and admitted.json()["status"] == "green"
    (sent,) = [Command.parse(p) for p in responder.on(topics.node_cmd(FACILITY, "main-1"))]
    assert sent.cmd == "open" and "desk check-in by guard1" in sent.args["reason"]
    # The node's manual event counts the visitor; the hub does not count them again.
    node.wait_for(lambda: len(node.acked()) == 1, what="the manual event stored")
    assert guard.get(f"{base}/occupancy").json()["occupancy"] == 1
    again = guard.post(
        f"{base}/checkins",
        json={"lookup_id": answer["lookup_id"], "door_id": "main"},
        headers=csrf(token),
    )
    assert again.status_code == 409 and again.json()["error"] == "already_admitted"
    actions = [(e.user, e.action) for e in running.hub.store.audit_log()]
    assert ("guard1", "desk.admit") in actions and ("guard1", "command.open") in actions
    black = guard.post(
        f"{base}/checkins/lookup",
        json={"nik": "3171012345678902", "name": "Budi Santoso"},
        headers=csrf(token),
    ).json()
    assert (black["status"], black["admissible"]) == ("black", False)
    refused = guard.post(
        f"{base}/checkins",
        json={"lookup_id": black["lookup_id"], "door_id": "main"},
        headers=csrf(token),
    )
    assert refused.status_code == 409 and "never admitted" in refused.json()["detail"]
    assert len(responder.on(topics.node_cmd(FACILITY, "main-1"))) == 1
    forged = guard.post(
        f"{base}/checkins", json={"lookup_id": "made-up", "door_id": "main"}, headers=csrf(token)
    )
    assert forged.status_code == 404


def test_a_guard_opens_a_door_remotely(web: Factory, clients: Factory) -> None:
    running = web()
    node = clients()
    responder = answering_node(clients, node)
    url = f"/api/v1/facilities/{FACILITY}/doors/main/open"
    viewer, viewer_token = running.login("viewer1")
    assert (
        viewer.post(url, json={"reason": "delivery"}, headers=csrf(viewer_token)).status_code == 403
    )
    guard, token = running.login("guard1")
    opened = guard.post(url, json={"reason": "delivery"}, headers=csrf(token))
    assert opened.status_code == 200 and opened.json()["opened"] is True
    (sent,) = [Command.parse(p) for p in responder.on(topics.node_cmd(FACILITY, "main-1"))]
    assert sent.args["reason"] == "remote open by guard1: delivery"
    missing = guard.post(
        f"/api/v1/facilities/{FACILITY}/doors/roof/open", json={"reason": "x"}, headers=csrf(token)
    )
    assert missing.status_code == 404
    empty = guard.post(url, json={"reason": ""}, headers=csrf(token))
    assert empty.status_code == 422 and empty.json()["detail"][0]["field"] == "reason"
    assert len(responder.on(topics.node_cmd(FACILITY, "main-1"))) == 1


def test_a_door_that_does_not_answer_is_a_clear_timeout(web: Factory, clients: Factory) -> None:
    running = web(web={"command_timeout_s": 0.3})
    node = clients()
    responder = answering_node(clients, node, answer=False)
    guard, token = running.login("guard1")
    base = f"/api/v1/facilities/{FACILITY}"
    answer = guard.post(
        f"{base}/checkins/lookup",
        json={"nik": "3171012345678903", "name": "Dewi Lestari"},
        headers=csrf(token),
    ).json()
    assert answer["status"] == "yellow"
    for _ in range(2):  # a failed attempt leaves the lookup usable for another try
        response = guard.post(
            f"{base}/checkins",
            json={"lookup_id": answer["lookup_id"], "door_id": "main"},
            headers=csrf(token),
        )
        assert response.status_code == 504
        assert response.json()["error"] == "node_timeout"
        assert "did not answer within 0.3 s" in response.json()["detail"]
    responder.wait_for(
        lambda: len(responder.on(topics.node_cmd(FACILITY, "main-1"))) == 2, what="two commands"
    )
    assert guard.get(f"{base}/occupancy").json()["occupancy"] == 0
    details = [e.detail for e in running.hub.store.audit_log() if e.action == "desk.admit"]
    assert details == ["yellow: failed: node_timeout"] * 2


# --- reading -----------------------------------------------------------------------------
def test_events_are_paged_and_filtered(web: Factory, clients: Factory) -> None:
    running = web()
    main = clients()
    north = clients(node_id="north-1", door_id="north")
    early = datetime.now(UTC) - timedelta(hours=2)
    sent = main.send(
        main.event("entry", ts=early, direction="entry", signal="green", admit=True),
        main.event("entry", direction="entry", signal="yellow", admit=True),
        main.event("denied", signal="red", admit=False, reason="status_red"),
        main.event("exit", direction="exit", admit=True),
        main.event("denied", signal="black", admit=False, reason="status_black"),
    )
    main.wait_acked(sent)
    north.wait_acked(north.send(north.event("entry"), north.event("entry")))
    viewer, _ = running.login("viewer1")
    url = f"/api/v1/facilities/{FACILITY}/events"
    first = viewer.get(url, params={"limit": 3}).json()
    assert len(first["events"]) == 3 and first["next_cursor"]
    ids = [e["id"] for e in first["events"]]
    assert ids == sorted(ids, reverse=True), "newest first"
    rest = viewer.get(url, params={"limit": 3, "cursor": first["next_cursor"]}).json()
    last = viewer.get(url, params={"limit": 3, "cursor": rest["next_cursor"]}).json()
    assert len(rest["events"]) == 3 and len(last["events"]) == 1 and last["next_cursor"] is None
    all_ids = ids + [e["id"] for e in rest["events"] + last["events"]]
    assert len(set(all_ids)) == 7
    assert {e["door_id"] for e in viewer.get(url, params={"door": "north"}).json()["events"]} == {
        "north"
    }
    denied = viewer.get(url, params={"kind": "denied"}).json()["events"]
    assert [e["reason"] for e in denied] == ["status_black", "status_red"]
    since = (early + timedelta(minutes=30)).isoformat()
    recent = viewer.get(url, params={"since": since, "door": "main"}).json()["events"]
    assert len(recent) == 4
    old = viewer.get(url, params={"until": since}).json()["events"]
    assert [e["event_id"] for e in old] == [sent[0].event_id]
    for params, field in [
        ({"limit": 0}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"since": "yesterday"}, "query.since"),
        ({"until": "2026-11-22T08:00:00"}, "query.until"),
        ({"kind": "bogus"}, "query.kind"),
        ({"door": "a/b"}, "query.door"),
        ({"colour": "red"}, "query.colour"),
    ]:
        response = viewer.get(url, params=params)
        assert response.status_code == 400, params
        assert response.json()["error"] == "bad_request"
        assert response.json()["detail"][0]["field"] == field
    doors = viewer.get(f"/api/v1/facilities/{FACILITY}/doors").json()["doors"]
    assert [d["id"] for d in doors] == ["main", "north"]
    assert doors[0]["last_event"]["event_id"] == sent[-1].event_id
    history = viewer.get(f"/api/v1/facilities/{FACILITY}/history").json()
    assert history["capacity"] == 3 and history["samples"]


def test_doors_show_their_nodes_state_and_stale_lists(web: Factory, clients: Factory) -> None:
    running = web()
    node = clients()
    status = NodeStatus(
        state=NodeState.DEGRADED,
        ts=datetime.now(UTC),
        problems=["camera: no frames"],
        trust_list_age_s=200_000.0,
        status_list_age_s=60.0,
        direction="both",
    )
    node.publish(topics.node_status(FACILITY, "main-1"), status.dumps(), retain=True)
    viewer, _ = running.login("viewer1")
    url = f"/api/v1/facilities/{FACILITY}/doors"
    node.wait_for(
        lambda: viewer.get(url).json()["doors"][0]["state"] == "degraded", what="degraded door"
    )
    main, north = viewer.get(url).json()["doors"]
    (seen,) = main["nodes"]
    assert seen["stale_lists"] is True and seen["problems"] == ["camera: no frames"]
    assert north["state"] == "unknown" and north["nodes"] == []
    node.publish(topics.node_status(FACILITY, "main-1"), b"", retain=True)


def test_the_openapi_document_lists_every_route(web: Factory) -> None:
    running = web()
    client = running.client()
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    app_routes = {
        (route.path.replace(":int", ""), method)
        for route in running.thread.service.app.routes  # type: ignore[union-attr]
        if hasattr(route, "methods")
        and route.path.startswith(("/api/", "/metrics", "/healthz", "/events"))
        for method in route.methods
        if method != "HEAD"
    }
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    assert app_routes == documented
    assert len(documented) == len(OPERATIONS) + 3
    schemas = doc["components"]["schemas"]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs <= set(schemas), refs - set(schemas)
    capacity = doc["paths"]["/api/v1/facilities/{facility_id}/capacity"]["put"]
    assert capacity["x-pintu-role"] == "admin"
    assert {"200", "401", "403", "404", "415", "422"} <= set(capacity["responses"])
    assert [p["name"] for p in capacity["parameters"]] == ["facility_id"]
    body = schemas[capacity["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                   .rsplit("/", 1)[1]]  # fmt: skip
    assert body["additionalProperties"] is False
    events = doc["paths"]["/api/v1/facilities/{facility_id}/events"]["get"]
    assert {p["name"] for p in events["parameters"]} >= {"door", "kind", "since", "until", "cursor"}
    for ops in doc["paths"].values():
        for op in ops.values():
            assert op["responses"] and op["summary"] and op["operationId"]


def test_several_facilities_get_a_picker_and_streams_of_their_own(
    web: Factory, clients: Factory
) -> None:
    clinic = {"id": "clinic", "name": "Clinic", "capacity": 20}
    mall = {"id": FACILITY, "name": "Mall A", "capacity": 3}
    running = web(facilities=[mall, clinic])
    viewer, _ = running.login("viewer1")
    listed = viewer.get("/api/v1/facilities").json()["facilities"]
    assert [(f["id"], f["occupancy"]["capacity"]) for f in listed] == [
        (FACILITY, 3),
        ("clinic", 20),
    ]
    page = viewer.get("/facilities/clinic").text
    assert 'id="facility-select"' in page
    assert '<option value="clinic" selected>Clinic</option>' in page
    node = clients(node_id="door-1", door_id="front", facility_id="clinic")
    with viewer.stream("GET", "/events/stream", params={"facility": "clinic"}) as stream:
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                assert json.loads(line[6:])["facility_id"] == "clinic"
                break
        clients().emit("entry")  # the mall's: not on the clinic's stream
        node.emit("entry")
        kinds = []
        for line in lines:
            if line.startswith("data: "):
                data = json.loads(line[6:])
                kinds.append((data["type"], data["facility_id"]))
                if data["type"] == "occupancy":
                    assert data["occupancy"] == 1
                    break
    assert set(kinds) <= {("event", "clinic"), ("occupancy", "clinic"), ("node", "clinic")}


def test_metrics_and_health(web: Factory, tmp_path: Path) -> None:
    token_file = tmp_path / "metrics-token"
    token_file.write_text("s3cret-metrics-token\n", encoding="utf-8")
    running = web(web={"metrics_token_file": str(token_file)})
    client = running.client()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["ok"] is True
    assert client.get("/metrics").status_code == 401
    metrics = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert f'pintu_hub_capacity{{facility="{FACILITY}"}} 3' in metrics.text
    assert client.post("/healthz").json()["error"] == "method_not_allowed"
    assert client.get("/api/v1/nothing").json()["error"] == "not_found"


def test_the_event_stream_pushes_occupancy(web: Factory, clients: Factory) -> None:
    running = web()
    node = clients()
    viewer, _ = running.login("viewer1")
    assert running.client().get("/events/stream").status_code == 401
    with viewer.stream("GET", "/events/stream", params={"facility": FACILITY}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        seen: list[dict[str, Any]] = []

        def next_occupancy() -> int:
            kind = ""
            for line in lines:  # the client's read timeout bounds the wait
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "occupancy":
                    data: dict[str, Any] = json.loads(line[6:])
                    seen.append(data)
                    return int(data["occupancy"])
            raise AssertionError("the stream ended")

        assert next_occupancy() == 0
        node.emit("entry")
        assert next_occupancy() == 1
    assert seen[-1]["capacity"] == 3
    assert viewer.get("/events/stream", params={"facility": "nowhere"}).status_code == 404


# --- the commands ------------------------------------------------------------------------
def test_check_config_accepts_the_example_and_names_bad_keys(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["hub", "check-config", "--config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "ok: mall-a (capacity 150, 3 doors), clinic (capacity 20, 1 door)" in result.output
    bad = tmp_path / "hub.toml"
    bad.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace(
            "command_timeout_s = 5.0", "comand_timeout = 5"
        ),
        encoding="utf-8",
    )
    result = runner.invoke(cli, ["hub", "check-config", "--config", str(bad)])
    assert result.exit_code == 1
    line = next(
        n for n, text in enumerate(bad.read_text().splitlines(), 1) if "comand_timeout" in text
    )
    assert f"hub.toml:{line}: web.comand_timeout: unknown key" in result.output
    people = tmp_path / "people.csv"
    people.write_text("nik,name,status\n123,Someone,green\n", encoding="utf-8")
    bad.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace("/etc/pintu/people.csv", str(people)),
        encoding="utf-8",
    )
    result = runner.invoke(cli, ["hub", "check-config", "--config", str(bad)])
    assert result.exit_code == 1 and "line 2: nik must be 16 digits" in result.output


def test_add_user_reads_the_password_from_a_file_or_asks_twice(
    make_config: Factory, tmp_path: Path
) -> None:
    config = make_config()
    toml = tmp_path / "hub.toml"
    toml.write_text(
        f'[store]\nbackend = "sqlite"\npath = "{config.store.path}"\n\n'
        '[[facilities]]\nid = "mall-a"\nname = "Mall A"\n',
        encoding="utf-8",
    )
    secret = tmp_path / "password"
    secret.write_text("long enough password\n", encoding="utf-8")
    runner = CliRunner()
    base = ["hub", "add-user", "--config", str(toml), "--username", "siti"]
    result = runner.invoke(cli, [*base, "--role", "guard", "--password-file", str(secret)])
    assert result.exit_code == 0, result.output
    again = runner.invoke(cli, [*base, "--role", "admin", "--password-file", str(secret)])
    assert again.exit_code == 1 and "already exists; use --update" in again.output
    prompted = runner.invoke(
        cli, [*base, "--role", "admin", "--update"], input="another password\nanother password\n"
    )
    assert prompted.exit_code == 0, prompted.output
    assert "another password" not in prompted.output
    short = runner.invoke(cli, [*base, "--role", "admin", "--update"], input="short\nshort\n")
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    with SqliteStore(config.store.path) as store:
        user = store.get_user("siti")
        assert user is not None and user.role == "admin"
        assert hub.auth.verify_password(user.password_hash, "another password")[0]
        actions = [e.action for e in store.audit_log()]
    assert actions.count("user.added") == 1 and actions.count("user.updated") == 1


def test_an_http_registry_needs_the_hubs_token(broker: Mosquitto, tmp_path: Path) -> None:
    toml = tmp_path / "hub.toml"
    base = (
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n\n'
        f'[store]\nbackend = "sqlite"\npath = "{tmp_path / "hub.db"}"\n\n'
        f"[web]\nport = {free_port()}\n\n"
        '[registry]\nkind = "http"\nurl = "https://registry.example"\n'
    )
    facility = '\n[[facilities]]\nid = "mall-a"\nname = "Mall A"\n'
    runner = CliRunner()
    toml.write_text(base + facility, encoding="utf-8")
    checked = runner.invoke(cli, ["hub", "check-config", "--config", str(toml)])
    assert checked.exit_code == 1 and "registry.credentials_file" in checked.output
    missing = tmp_path / "no-such-token"
    toml.write_text(base + f'credentials_file = "{missing}"\n' + facility, encoding="utf-8")
    checked = runner.invoke(cli, ["hub", "check-config", "--config", str(toml)])
    assert checked.exit_code == 0 and "warning" in checked.output, checked.output
    result = runner.invoke(cli, ["hub", "serve", "--config", str(toml)])
    assert result.exit_code == 1 and "secret file not found" in result.output


def test_serve_runs_until_sigterm_and_tells_systemd_when_both_are_up(
    broker: Mosquitto, tmp_path: Path, clients: Factory
) -> None:
    port = free_port()
    toml = tmp_path / "hub.toml"
    toml.write_text(
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n\n'
        f'[store]\nbackend = "sqlite"\npath = "{tmp_path / "hub.db"}"\n\n'
        f'[web]\nport = {port}\nsecret_key_file = "{tmp_path / "secret"}"\n\n'
        '[[facilities]]\nid = "mall-a"\nname = "Mall A"\ncapacity = 10\n',
        encoding="utf-8",
    )
    listener = clients(topics=[topics.hub_status(FACILITY)])
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(20)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
        command = [sys.executable, "-m", "pintu", "hub", "serve", "--config", str(toml)]
        with subprocess.Popen(command, env=env) as process:
            try:
                assert notify.recv(4096).startswith(b"READY=1")
                # READY means the web server already listens: no retry needed.
                with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                    assert client.get("/healthz").json()["ok"] is True
                process.send_signal(signal.SIGTERM)
                assert process.wait(20) == 0
            finally:
                if process.poll() is None:
                    process.kill()
        assert notify.recv(4096) == b"STOPPING=1"
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    listener.wait_for(
        lambda: (
            NodeStatus.parse(listener.last(topics.hub_status(FACILITY))).state == NodeState.OFFLINE
        ),
        what="hub offline",
    )
