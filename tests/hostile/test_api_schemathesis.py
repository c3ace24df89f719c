"""The hub's and the registry's APIs under schemathesis, driven from their OpenAPI
documents as a logged-in admin (hub: session cookie and CSRF header; registry: an
operator's bearer token), with data that fits the schema and data that does not, one
operation at a time and then in sequences of linked calls (stateful).

What a client would notice is checked: no unhandled error (``apifuzz``), every 4xx with an
``error`` code. The
number of examples per operation and mode is ``PINTU_API_EXAMPLES`` (2 by default, so the
suite stays quick); ``make fuzz`` runs many more.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from argon2 import PasswordHasher
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette's test client (which schemathesis uses for an ASGI app) warns on import.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

import hub.auth
import registry.auth
from hub.auth import hash_password
from hub.config import HubConfig
from hub.web.server import ServiceThread
from provisioning.mosquitto import Mosquitto
from registry.app import create_app
from registry.config import parse_config
from registry.service import Registry
from runtime.listen import bind

from .apifuzz import Tally, run, run_stateful

EXAMPLES = int(os.environ.get("PINTU_API_EXAMPLES", "2"))
ADMIN, PASSWORD = "admin", "a long admin password"
logger = logging.getLogger(__name__)


def report(name: str, tally: Tally) -> None:
    logger.warning(
        "%s: %d requests, statuses %s, %d server errors, unsatisfiable: %s",
        name,
        tally.requests,
        dict(sorted(tally.by_status.items())),
        tally.server_errors,
        tally.unsatisfiable,
    )
    for (label, status), count in sorted(tally.by_operation.items()):
        logger.info("%s: %s -> %d (%d times)", name, label, status, count)


@pytest.fixture
def hub_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceThread]:
    monkeypatch.setattr(
        hub.auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    config = HubConfig.model_validate(
        {
            "mqtt": {"host": broker.host, "port": broker.port, "client_id": "hub-api"},
            "store": {"backend": "sqlite", "path": str(tmp_path / "hub.db")},
            "web": {"secret_key_file": str(tmp_path / "secret")},
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
    thread.hub.store.add_user(ADMIN, hash_password(PASSWORD), "admin")
    try:
        yield thread
    finally:
        thread.stop()
        broker.stop()


def test_the_hub_api_never_fails_and_always_says_why(hub_service: ServiceThread) -> None:
    url = hub_service.url
    with requests.Session() as session:
        token = session.get(f"{url}/api/v1/session").json()["csrf_token"]
        login = session.post(
            f"{url}/api/v1/session",
            json={"username": ADMIN, "password": PASSWORD},
            headers={"X-CSRF-Token": token},
        )
        assert login.status_code == 200, login.text
        session.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")

        def call(case: Any) -> Any:
            # Generated credentials would replace the session's own: send the real ones.
            if case.headers:
                case.headers.pop("X-CSRF-Token", None)
            if case.cookies:
                case.cookies.pop("pintu_session", None)
            return case.call(base_url=url, session=session, timeout=30)

        # Logging in and out is the session itself, and the live stream never ends by
        # design; their own tests cover them (tests/hub/test_web.py).
        tally = run(
            schema,
            call,
            EXAMPLES,
            skip=[
                ("POST", "/api/v1/session"),
                ("DELETE", "/api/v1/session"),
                ("GET", "/events/stream"),
            ],
            known={"facility_id": "mall-a", "door_id": "main"},
        )
        report("hub", tally)
        assert tally.failures == []
        assert tally.by_status[200] > 0  # it reached the handlers, not only the 401s

        def prepare(case: Any) -> None:
            if case.headers:
                case.headers.pop("X-CSRF-Token", None)
            if case.cookies:
                case.cookies.pop("pintu_session", None)
            if case.path in ("/api/v1/session", "/events/stream"):
                # Not logging out mid-run, not waiting on a stream that never ends.
                case.method = "GET" if case.path == "/api/v1/session" else case.method
                case.path = "/api/v1/session"

        stateful = run_stateful(
            schema, prepare, {"base_url": url, "session": session, "timeout": 30}, EXAMPLES
        )
        report("hub, stateful", stateful)
        assert stateful.failures == []
        assert session.get(f"{url}/api/v1/session").json()["user"] is not None


@pytest.fixture
def registry_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    monkeypatch.setattr(
        registry.auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )
    config_path = tmp_path / "registry.toml"
    config_path.write_text("[web]\nport = 0\n", encoding="utf-8")
    service = Registry.open(parse_config(config_path.read_text(), str(config_path), tmp_path))
    service.add_operator(ADMIN, PASSWORD)
    try:
        yield create_app(service), ADMIN
    finally:
        service.close()


def test_the_registry_api_never_fails_and_always_says_why(registry_app: tuple[Any, str]) -> None:
    app, _ = registry_app
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    with TestClient(app) as client:
        login = client.post("/api/v1/login", json={"username": ADMIN, "password": PASSWORD})
        assert login.status_code == 200, login.text
        bearer = {"Authorization": f"Bearer {login.json()['token']}"}

    def call(case: Any) -> Any:
        if case.headers:
            case.headers.pop("Authorization", None)
        return case.call(headers=bearer)

    tally = run(schema, call, EXAMPLES, skip=[("POST", "/logout"), ("POST", "/api/v1/logout")])
    report("registry", tally)
    assert tally.failures == []
    assert tally.by_status[200] > 0

    def prepare(case: Any) -> None:
        if case.headers:
            case.headers.pop("Authorization", None)
        if case.path.endswith("/logout"):
            case.path, case.method = "/api/v1/me", "GET"  # keep the run's token alive

    stateful = run_stateful(schema, prepare, {"headers": bearer}, EXAMPLES * 5)
    report("registry, stateful", stateful)
    assert stateful.failures == []
