"""A registry in a temporary directory, its API in-process, and callers of every kind.

Every test that opens the registry runs twice: on SQLite, and on PostgreSQL in a schema of
its own (skipped when no server answers; see ``pg_server`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette prefers the httpx2 fork for its TestClient; httpx (what the project
    # installs) works the same for in-process calls, only with a deprecation notice.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from registry import auth
from registry.app import create_app
from registry.config import RegistryConfig, parse_config
from registry.service import Registry

from .pages import Server, start_server

# 2026-11-22T08:00:00Z: every test starts here and moves the clock by hand.
T0 = 1795334400
PASSWORD = "correct horse battery"  # noqa: S105 - a test account's password


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def cheap_hasher(monkeypatch: pytest.MonkeyPatch) -> None:
    # Argon2's production cost (64 MiB, t=3) would make the suite slow for no benefit.
    monkeypatch.setattr(auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def store_section(kind: str, request: pytest.FixtureRequest) -> str:
    """The ``[store]`` section of a ``kind`` store for this test ("" for the default)."""
    if kind == "sqlite":
        return ""
    dsn: str = request.getfixturevalue("pg_dsn")
    return f'[store]\nkind = "postgresql"\ndsn = {json.dumps(dsn)}\n'


@pytest.fixture(params=["sqlite", "postgresql"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which store backend the test runs on."""
    return str(request.param)


@pytest.fixture
def store_toml(store_kind: str, request: pytest.FixtureRequest) -> str:
    """The ``[store]`` section naming this test's store, to append to a configuration."""
    return store_section(store_kind, request)


@pytest.fixture
def config(tmp_path: Path, store_toml: str) -> RegistryConfig:
    return parse_config("[web]\nport = 0\n" + store_toml, base=tmp_path)


@pytest.fixture
def registry(config: RegistryConfig, clock: Clock) -> Iterator[Registry]:
    reg = Registry.open(config, clock=clock)
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def client(registry: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(registry)) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    """An operator, an active facility with a PIC, a hub token and two doors."""

    client: TestClient
    registry: Registry
    clock: Clock
    operator: str = ""
    pic: str = ""
    hub: str = ""
    facility_id: str = ""

    @property
    def op(self) -> dict[str, str]:
        return bearer(self.operator)

    @property
    def pic_h(self) -> dict[str, str]:
        return bearer(self.pic)

    @property
    def hub_h(self) -> dict[str, str]:
        return bearer(self.hub)

    def login_operator(self, name: str = "dewi") -> str:
        self.registry.add_operator(name, PASSWORD)
        return self.login(name)

    def login(self, username: str, password: str = PASSWORD) -> str:
        r = self.client.post("/api/v1/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])

    def request(self, name: str, email: str) -> str:
        body: dict[str, Any] = {
            "name": name,
            "address": "Jl. Jenderal Sudirman 1, Jakarta",
            "type": "mall",
            "capacity": 300,
            "pic_name": "Dewi Lestari",
            "pic_email": email,
        }
        r = self.client.post("/api/v1/facilities/requests", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def verify(self, facility_id: str) -> str:
        r = self.client.post(f"/api/v1/facilities/{facility_id}/verify", headers=self.op)
        assert r.status_code == 200, r.text
        return str(r.json()["activation_token"])

    def add_facility(self, name: str, email: str) -> tuple[str, str, str]:
        """Request, verify and activate a facility; its id, PIC token and hub token."""
        facility_id = self.request(name, email)
        token = self.verify(facility_id)
        r = self.client.post(
            f"/api/v1/facilities/{facility_id}/activate",
            json={"token": token, "password": PASSWORD},
        )
        assert r.status_code == 200, r.text
        return facility_id, self.login(email), str(r.json()["hub_token"])

    def add_door(self, facility_id: str, door_id: str, direction: str, pic: str) -> None:
        r = self.client.post(
            f"/api/v1/facilities/{facility_id}/doors",
            json={"door_id": door_id, "name": door_id.replace("-", " "), "direction": direction},
            headers=bearer(pic),
        )
        assert r.status_code == 201, r.text


@pytest.fixture
def world(client: TestClient, registry: Registry, clock: Clock) -> World:
    w = World(client, registry, clock)
    w.operator = w.login_operator()
    w.facility_id, w.pic, w.hub = w.add_facility("Mall Kelapa", "pic@mall.example")
    w.add_door(w.facility_id, "main-in", "entrance", w.pic)
    w.add_door(w.facility_id, "main-out", "exit", w.pic)
    return w


@pytest.fixture
def config_file(tmp_path: Path, store_toml: str) -> Path:
    """A configuration file for the CLI, with its state beside it (and the same store as
    the ``registry`` fixture's)."""
    path = tmp_path / "registry.toml"
    path.write_text("tracing_window_days = 21\n\n[web]\nport = 0\n" + store_toml)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``pintu registry serve`` with an operator, for a module's console tests."""
    yield from start_server(tmp_path_factory.mktemp("registry"))
