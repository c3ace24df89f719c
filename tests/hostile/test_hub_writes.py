"""Every state-changing route of the hub's API, from its operation table: refused without
a login (401), with a role below the one it needs (403), and without the session's CSRF
token (403), each with an error code, and with nothing changed.

(The registry's routes get the same treatment in ``tests/registry/test_auth.py``.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from argon2 import PasswordHasher

import hub.auth
from hub.auth import hash_password
from hub.config import HubConfig
from hub.web.api import OPERATIONS, Operation
from hub.web.server import ServiceThread
from provisioning.mosquitto import Mosquitto
from runtime.listen import bind

RANK = {"viewer": 0, "guard": 1, "admin": 2}
USERS = {role: (f"{role}1", f"a long {role} password") for role in RANK}
WRITES = [op for op in OPERATIONS if op.method != "GET" and op.role is not None]
PATH = {"facility_id": "mall-a", "door_id": "main", "alert_id": "1"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceThread]:
    tmp = tmp_path_factory.mktemp("writes")
    cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    saved, hub.auth.HASHER = hub.auth.HASHER, cheap
    broker = Mosquitto(tmp / "broker")
    broker.start()
    config = HubConfig.model_validate(
        {
            "mqtt": {"host": broker.host, "port": broker.port, "client_id": "hub-writes"},
            "store": {"backend": "sqlite", "path": str(tmp / "hub.db")},
            "web": {"secret_key_file": str(tmp / "secret")},
            "facilities": [
                {
                    "id": "mall-a",
                    "name": "Mall A",
                    "capacity": 3,
                    "doors": [
                        {"id": "main", "name": "Main", "direction": "both", "nodes": ["main-1"]}
                    ],
                }
            ],
        }
    )
    thread = ServiceThread(config, sock=bind("127.0.0.1", 0)).start()
    for role, (name, password) in USERS.items():
        thread.hub.store.add_user(name, hash_password(password), role)  # type: ignore[arg-type]
    try:
        yield thread
    finally:
        thread.stop()
        broker.stop()
        hub.auth.HASHER = saved


def session_as(url: str, role: str | None) -> tuple[requests.Session, str]:
    """A session (logged in as ``role``, or anonymous) and its CSRF token."""
    session = requests.Session()
    token: str = session.get(f"{url}/api/v1/session").json()["csrf_token"]
    if role is not None:
        name, password = USERS[role]
        response = session.post(
            f"{url}/api/v1/session",
            json={"username": name, "password": password},
            headers={"X-CSRF-Token": token},
        )
        assert response.status_code == 200, response.text
        token = response.json()["csrf_token"]
    return session, token


def send(session: requests.Session, url: str, op: Operation, headers: dict[str, str]) -> Any:
    path = re.sub(r"\{(\w+)\}", lambda m: PATH[m.group(1)], op.path)
    return session.request(op.method, f"{url}{path}", json={}, headers=headers, timeout=30)


def state(url: str) -> Any:
    session, _ = session_as(url, "admin")
    with session:
        return (
            session.get(f"{url}/api/v1/facilities/mall-a/capacity").json(),
            session.get(f"{url}/api/v1/facilities/mall-a/occupancy").json()["occupancy"],
            len(session.get(f"{url}/api/v1/facilities/mall-a/adjustments").json()["adjustments"]),
        )


@pytest.mark.parametrize("op", WRITES, ids=lambda op: f"{op.method} {op.path}")
def test_every_write_checks_login_role_and_csrf(service: ServiceThread, op: Operation) -> None:
    url = service.url
    before = state(url)
    anonymous, token = session_as(url, None)
    with anonymous:
        response = send(anonymous, url, op, {"X-CSRF-Token": token})
        assert response.status_code == 401, response.text
        assert response.json()["error"]
    assert op.role is not None
    for role, rank in RANK.items():
        if rank >= RANK[op.role]:
            continue
        session, token = session_as(url, role)
        with session:
            response = send(session, url, op, {"X-CSRF-Token": token})
            assert response.status_code == 403, (role, response.text)
            assert response.json()["error"] == "forbidden"
    session, _ = session_as(url, op.role)
    with session:
        for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
            response = send(session, url, op, headers)
            assert response.status_code == 403, response.text
            assert response.json()["error"] == "csrf"
    assert state(url) == before
