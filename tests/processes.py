"""Services in processes of their own for the tests, and waiting on them with a deadline."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def wait(condition: Callable[[], Any], timeout_s: float = 15.0, what: str = "") -> Any:
    """Poll ``condition`` until it is true (and return it), or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s} s: {what or condition}")
        pause.wait(0.02)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RegistryProcess:
    """``pintu registry serve`` in its own process, stopped and started at will."""

    def __init__(self, config_path: Path, port: int) -> None:
        self.config_path = config_path
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("NOTIFY_SOCKET", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pintu", "registry", "serve", "--config", str(self.config_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        with httpx.Client(base_url=self.url, timeout=2) as http:

            def answers() -> bool:
                assert self.process is not None and self.process.poll() is None, "it died"
                try:
                    return http.get("/api/v1/health").status_code == 200
                except httpx.TransportError:
                    return False

            wait(answers, 20, "the registry to answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate()
        self.process = None


OPERATOR, OPERATOR_PASSWORD = "dewi", "a long operator password"


def registry_with_facility(
    root: Path, port: int, doors: list[tuple[str, str, str]], *, public_url: bool = False
) -> tuple[Path, str, str, Any]:
    """A registry made in ``root/registry`` for ``port``, with an operator (``OPERATOR``),
    an active facility and its doors (id, direction, kind), as its operator and PIC make
    them: the configuration file, the facility's id, its hub token and the list keys a
    door pins (what `pintu registry list-keys` gives the technician)."""
    from registry.auth import Principal
    from registry.config import parse_config
    from registry.models import DoorIn, FacilityRequestIn
    from registry.service import Registry

    (root / "registry").mkdir()
    config_path = root / "registry" / "registry.toml"
    address = f'public_url = "http://127.0.0.1:{port}"\n' if public_url else ""
    config_path.write_text(f'{address}[web]\nhost = "127.0.0.1"\nport = {port}\n', encoding="utf-8")
    registry = Registry.open(
        parse_config(config_path.read_text(), str(config_path), root / "registry")
    )
    try:
        registry.add_operator(OPERATOR, OPERATOR_PASSWORD)
        created = registry.request_facility(
            FacilityRequestIn(
                name="Mall Kelapa",
                address="Jl. Boulevard Raya 1",
                type="mall",
                capacity=300,
                pic_name="Dewi Lestari",
                pic_email="pic@mall.example",
            )
        )
        token = registry.verify_facility(created.id, OPERATOR).token
        hub_token = registry.activate_facility(created.id, token, OPERATOR_PASSWORD).hub_token
        for door_id, direction, kind in doors:
            door = DoorIn(door_id=door_id, name=door_id.title(), direction=direction, kind=kind)
            registry.add_door(Principal("operator", OPERATOR), created.id, door)
        pinned = registry.list_keys.state().pinned
    finally:
        registry.close()
    return config_path, created.id, hub_token, pinned


def linked_hub_config(
    workdir: Path,
    broker: Any,
    registry_url: str,
    hub_token: str,
    facility: dict[str, Any],
    *,
    client_id: str,
    sync_interval_s: float = 0.5,
    **top_level: Any,
) -> Any:
    """A hub on ``broker`` with a SQLite store in ``workdir``, linked to the registry at
    ``registry_url`` with its token (written to ``workdir/hub-token``), syncing and pushing
    often, for one facility."""
    from hub.config import HubConfig

    (workdir / "hub-token").write_text(hub_token + "\n", encoding="utf-8")
    return HubConfig.model_validate(
        {
            "mqtt": {"host": broker.host, "port": broker.port, "client_id": client_id},
            "store": {"backend": "sqlite", "path": str(workdir / "hub.db")},
            "registry": {
                "kind": "http",
                "url": registry_url,
                "credentials_file": str(workdir / "hub-token"),
                "sync_interval_s": sync_interval_s,
                "push_interval_s": 0.2,
                "retry_max_s": 0.5,
            },
            "facilities": [facility],
            **top_level,
        }
    )


class HubThread:
    """The hub on an event loop of its own, stopped and started again at will."""

    def __init__(self, config: Any) -> None:
        import asyncio

        from hub.service import Hub

        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.hub = Hub(config)
        self.running = False

    def call(self, coro: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self) -> HubThread:
        from hub.service import Hub

        self.hub = Hub(self.config)
        self.call(self.hub.start())
        assert self.call(self.hub.wait_ready(10))
        self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self.call(self.hub.stop())
            self.running = False

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
