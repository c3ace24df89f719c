"""Fixtures shared by the whole suite: the PostgreSQL server the hub and registry stores
are tested against, a schema of its own for each test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin
from playwright.sync_api import Browser, sync_playwright
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# Every GPIO device in the tests runs on gpiozero's mock pins; nothing needs a Pi.
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")


def _on_a_raspberry_pi() -> bool:
    try:
        with open("/proc/device-tree/model", "rb") as model:
            return b"Raspberry Pi" in model.read()
    except OSError:
        return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``pi`` need a real Raspberry Pi: skipped elsewhere, saying why."""
    if _on_a_raspberry_pi():
        return
    skip = pytest.mark.skip(reason="needs a Raspberry Pi (camera or GPIO)")
    for item in items:
        if item.get_closest_marker("pi") is not None:
            item.add_marker(skip)


# The PostgreSQL server the tests use; each test works in a schema of its own.
PG_DSN_VARIABLE = "PINTU_TEST_PG_DSN"
DEFAULT_PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The DSN of the test server; the test is skipped (once asked, for the whole run) when
    no PostgreSQL answers there."""
    dsn = os.environ.get(PG_DSN_VARIABLE, DEFAULT_PG_DSN)
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as err:
        params = conninfo_to_dict(dsn)
        where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
        pytest.skip(
            f"PostgreSQL is not reachable at {where} ({str(err).strip().splitlines()[0]}); "
            f"install and start it (apt-get install postgresql) or point ${PG_DSN_VARIABLE} "
            "at a server"
        )
    return dsn


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A DSN whose tables live in a fresh schema of this test's own, dropped after it."""
    schema = f"pintu_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield make_conninfo(pg_server, options=f"-c search_path={schema}")
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


# Debian's Chromium, for the browser tests. Without the background-networking
# flags it keeps trying to reach the network, which this machine's closed network refuses.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for a test module."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    """gpiozero's simulated pins (plain, not PWM) for a whole node, reset after the test."""
    previous = Device.pin_factory
    Device.pin_factory = MockFactory(pin_class=MockPin)
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = previous
