"""Sealed node bundles at the hub: filed by an admin, handed to a node once, never after
they expire; in both stores, and through the API with its logins, roles and bad input."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

import hub.auth
import hub.enrolments
import hub.store.enrolments
from hub.auth import hash_password
from hub.config import HubConfig
from hub.enrolments import EnrolmentRefused, Refusal
from hub.errors import AlreadyExists
from hub.store import Store
from hub.store.postgres import PgStore
from hub.store.sqlite import SqliteStore
from hub.store.tables import enrolments
from hub.web.server import ServiceThread
from protocol import enrolment
from protocol.events import utcnow
from runtime.listen import bind

PASSWORDS = {"viewer1": "viewer-pass-1", "admin1": "admin-pass-1"}


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        hub.auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path / "hub.db")
    else:
        opened = PgStore(request.getfixturevalue("pg_dsn"))
    yield opened
    opened.close()


def sealed_of(store: Store, lookup_id: str) -> bytes | None:
    """The ciphertext the store still holds for ``lookup_id`` (the API never shows it)."""
    query = select(enrolments.c.sealed).where(enrolments.c.lookup_id == lookup_id)
    sealed = store._sa("read", lambda conn: conn.execute(query).scalar_one(), write=False)
    return None if sealed is None else bytes(sealed)


def refusal(store: Store, lookup_id: str) -> Refusal:
    with pytest.raises(EnrolmentRefused) as caught:
        store.claim_enrolment(lookup_id)
    return caught.value.reason


def test_a_bundle_is_handed_out_once_and_dropped(store: Store) -> None:
    lookup = enrolment.lookup_id(enrolment.new_token())
    store.add_enrolment(lookup, b"sealed", utcnow() + timedelta(minutes=30))
    with pytest.raises(AlreadyExists):
        store.add_enrolment(lookup, b"other", utcnow() + timedelta(minutes=30))
    assert store.claim_enrolment(lookup) == b"sealed"
    assert sealed_of(store, lookup) is None
    record = store.enrolment(lookup)
    assert record is not None and record.used_at is not None
    assert refusal(store, lookup) is Refusal.USED
    assert store.enrolment(lookup) == record, "a refused claim changes nothing"
    assert refusal(store, "0" * 32) is Refusal.UNKNOWN


def test_an_expired_bundle_is_refused_and_left_as_it_was(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookup = enrolment.lookup_id(enrolment.new_token())
    store.add_enrolment(lookup, b"sealed", utcnow() + timedelta(minutes=5))
    later = utcnow() + timedelta(minutes=6)
    monkeypatch.setattr(hub.enrolments, "utcnow", lambda: later)
    monkeypatch.setattr(hub.store.enrolments, "utcnow", lambda: later)
    before = store.enrolment(lookup)
    assert refusal(store, lookup) is Refusal.EXPIRED
    assert store.enrolment(lookup) == before and before is not None and before.used_at is None
    assert sealed_of(store, lookup) == b"sealed"
    # The next bundle filed sweeps the expired one's ciphertext; a late claim still hears
    # "expired", and the live bundle is untouched.
    live = enrolment.lookup_id(enrolment.new_token())
    store.add_enrolment(live, b"live", later + timedelta(minutes=5))
    assert sealed_of(store, lookup) is None and sealed_of(store, live) == b"live"
    assert refusal(store, lookup) is Refusal.EXPIRED
    assert store.claim_enrolment(live) == b"live"


def test_two_hub_workers_claiming_at_once_hand_it_out_once(pg_dsn: str) -> None:
    workers = [PgStore(pg_dsn) for _ in range(4)]
    try:
        lookup = enrolment.lookup_id(enrolment.new_token())
        workers[0].add_enrolment(lookup, b"sealed", utcnow() + timedelta(minutes=5))
        got: list[bytes | Refusal] = []
        start = threading.Barrier(len(workers))

        def claim(worker: PgStore) -> None:
            start.wait()
            try:
                got.append(worker.claim_enrolment(lookup))
            except EnrolmentRefused as err:
                got.append(err.reason)

        threads = [threading.Thread(target=claim, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert sorted(map(str, got)) == sorted(["b'sealed'"] + [Refusal.USED.value] * 3)
    finally:
        for worker in workers:
            worker.close()


@pytest.fixture
def web(make_config: Callable[..., HubConfig], tmp_path: Path) -> Iterator[ServiceThread]:
    config = make_config(web={"secret_key_file": str(tmp_path / "web-secret")})
    thread = ServiceThread(config, sock=bind("127.0.0.1", 0)).start()
    thread.hub.store.add_user("viewer1", hash_password(PASSWORDS["viewer1"]), "viewer")
    thread.hub.store.add_user("admin1", hash_password(PASSWORDS["admin1"]), "admin")
    yield thread
    thread.stop()


def login(web: ServiceThread, username: str) -> tuple[httpx.Client, dict[str, str]]:
    client = httpx.Client(base_url=web.url, timeout=15)
    token = client.get("/api/v1/session").json()["csrf_token"]
    r = client.post(
        "/api/v1/session",
        json={"username": username, "password": PASSWORDS[username]},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 200, r.text
    return client, {"X-CSRF-Token": r.json()["csrf_token"]}


def body(**changes: Any) -> dict[str, Any]:
    doc = {
        "lookup_id": enrolment.lookup_id(enrolment.new_token()),
        "sealed": enrolment.encode_sealed(b"\x00" * 40),
        "ttl_s": 600,
        "node_id": "main-1",
    }
    doc.update(changes)
    return doc


def test_the_api_files_for_admins_only_and_hands_out_to_anyone_once(web: ServiceThread) -> None:
    anonymous = httpx.Client(base_url=web.url, timeout=15)
    assert anonymous.post("/api/v1/enrolments", json=body()).status_code == 401
    viewer, viewer_csrf = login(web, "viewer1")
    r = viewer.post("/api/v1/enrolments", json=body(), headers=viewer_csrf)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    admin, csrf = login(web, "admin1")
    assert admin.post("/api/v1/enrolments", json=body()).json()["error"] == "csrf"
    for bad, field in [
        (body(lookup_id="xyz"), "lookup_id"),
        (body(ttl_s=0), "ttl_s"),
        (body(ttl_s=8 * 86_400), "ttl_s"),
        (body(sealed="not base64!"), "sealed"),
        (body(node_id="../etc"), "node_id"),
        ({**body(), "extra": 1}, "extra"),
    ]:
        r = admin.post("/api/v1/enrolments", json=bad, headers=csrf)
        assert r.status_code == 422, r.text
        assert field in str(r.json()["detail"])
    store: Any = web.hub.store
    assert store.conn.execute("SELECT count(*) FROM enrolments").fetchone()[0] == 0

    good = body()
    r = admin.post("/api/v1/enrolments", json=good, headers=csrf)
    assert r.status_code == 201, r.text
    assert r.json()["node_id"] == "main-1" and r.json()["expires_at"].endswith("Z")
    again = admin.post("/api/v1/enrolments", json=good, headers=csrf)
    assert again.status_code == 409
    audit = store.audit_log(limit=10)
    assert audit[0].action == "enrolment.created" and audit[0].target == "main-1"

    # The node has no session and no CSRF token: the claim needs neither.
    claim = f"/api/v1/enrolments/{good['lookup_id']}/claim"
    first = anonymous.post(claim)
    assert first.status_code == 200 and first.json()["sealed"] == good["sealed"]
    second = anonymous.post(claim)
    assert (second.status_code, second.json()["error"]) == (409, "token_used")
    assert "was used at" in second.json()["detail"]
    unknown = anonymous.post(f"/api/v1/enrolments/{'0' * 32}/claim")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_token")
    junk = anonymous.post("/api/v1/enrolments/..%2F..%2Fetc/claim")
    assert junk.status_code == 404

    doc = anonymous.get("/api/v1/openapi.json").json()
    claim_doc = doc["paths"]["/api/v1/enrolments/{lookup_id}/claim"]["post"]
    assert claim_doc["security"] == [] and set(claim_doc["responses"]) >= {"404", "409", "410"}
    for client in (anonymous, viewer, admin):
        client.close()
