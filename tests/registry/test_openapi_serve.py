"""The OpenAPI document matches the routes; ``pintu registry serve`` runs under uvicorn."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.routing import Route

from pintu.cli import cli
from registry.app import create_app

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from registry.service import Registry

ROOT = Path(__file__).resolve().parents[2]


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


@pytest.mark.parametrize("store_kind", ["sqlite"])  # the routes, not the store
def test_document_describes_exactly_the_routes(client: TestClient, registry: Registry) -> None:
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, methods in doc["paths"].items() for m in methods}
    app = create_app(registry)
    # The console's pages are not the API's: they stay out of its document.
    routes = [
        route for route in app.routes if isinstance(route, Route) and route.path.startswith("/api/")
    ]
    routed = {
        (m, route.path)
        for route in routes
        for m in (route.methods or set()) - {"HEAD"}
        if route.path != "/api/v1/openapi.json"
    }
    assert documented == routed
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    for path, methods in doc["paths"].items():
        for method, entry in methods.items():
            where = f"{method} {path}"
            if entry["x-pintu-callers"] == ["public"]:
                assert entry["security"] == [], where
                continue
            assert entry["security"], where
            assert {"401", "403"} <= set(entry["responses"]), where
            if "requestBody" in entry:
                assert {"400", "413", "415", "422"} <= set(entry["responses"]), where
    visits = doc["paths"]["/api/v1/visits"]["post"]
    body = visits["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "array"
    item = schemas[body["items"]["$ref"].rsplit("/", 1)[1]]
    assert set(item["required"]) == {
        "visit_id",
        "facility_id",
        "subject",
        "door_id",
        "check_in",
        "check_out",
    }
    assert item["additionalProperties"] is False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_until_sigterm(tmp_path: Path, store_toml: str) -> None:
    # On each store: the operator the CLI adds is the one the running service logs in.
    port = free_port()
    config = tmp_path / "registry.toml"
    config.write_text(f'[web]\nhost = "127.0.0.1"\nport = {port}\n' + store_toml)
    password = tmp_path / "password"
    password.write_text("a long enough password\n")
    r = CliRunner().invoke(
        cli,
        [
            "registry",
            "add-operator",
            "--config",
            str(config),
            "--username",
            "ops",
            "--password-file",
            str(password),
        ],
    )
    assert r.exit_code == 0, r.output
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NOTIFY_SOCKET", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "pintu", "-v", "registry", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=5) as http:
            deadline = time.monotonic() + 20
            while True:
                assert process.poll() is None, process.communicate()[1].decode()
                try:
                    health = http.get("/api/v1/health")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the registry did not start listening"
                    time.sleep(0.05)  # polling the condition "it answers", with a deadline
            assert health.json()["ok"] is True
            login = http.post(
                "/api/v1/login", json={"username": "ops", "password": "a long enough password"}
            )
            token = login.json()["token"]
            trust = http.get("/api/v1/trust", headers={"Authorization": f"Bearer {token}"})
            assert trust.status_code == 200 and trust.json()["format"] == "pintu-trust"
            assert http.get("/api/v1/trust").status_code == 401
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr.decode()
    log = stderr.decode()
    assert f"registry API at http://127.0.0.1:{port}" in log
    assert "the registry has stopped" in log


def test_the_service_purges_old_visits_periodically(tmp_path: Path, store_toml: str) -> None:
    from registry.config import parse_config
    from registry.records import Visit
    from registry.server import run
    from registry.service import Registry
    from runtime.listen import bind

    config = parse_config("purge_interval_s = 0.05\n" + store_toml, base=tmp_path)
    registry = Registry.open(config)
    now = int(time.time())
    old_end = now - 22 * 86_400

    def add(visit_id: str, end: int) -> None:
        registry.store.add_visits("f1", [Visit("f1", visit_id, "1" * 24, "d", end - 60, end)], now)

    add("old-1", old_end)
    add("recent", now - 60)

    async def purged(task: asyncio.Task[None]) -> None:
        deadline = time.monotonic() + 10
        while registry.store.count_visits() > 1:
            assert not task.done() and time.monotonic() < deadline, "no purge"
            await asyncio.sleep(0.01)  # polling the store, with a deadline

    async def scenario() -> None:
        stop = asyncio.Event()
        sock = bind("127.0.0.1", 0)
        task = asyncio.create_task(run(registry, sock, stop))
        try:
            await purged(task)  # the purge at start
            add("old-2", old_end)  # appears later: a later purge must take it
            await purged(task)
        finally:
            stop.set()
            await task
            sock.close()

    try:
        asyncio.run(scenario())
        remaining = [v.visit_id for v in registry.store.visits_of("1" * 24, 0, 2**31)]
        assert remaining == ["recent"]
    finally:
        registry.close()
