"""Hub API latency: the time of a request to the hub's JSON API, beside a static file.

    python -m bench.api_latency                   # print the table
    python -m bench.api_latency --rounds 500      # more requests a route

A private Mosquitto and the hub with its web server on one asyncio loop (as ``pintu hub
serve`` runs them, here in a thread of this process). An httpx client, logged in as an
admin and keeping its connection open, sends the requests of every row in turn, round
after round, so a busy moment of a shared machine falls on every row alike. Each request
is timed from before it is sent to its body read in full.

The baseline is a static file (the dashboard's stylesheet) served by the same app: it
passes the same middleware (session, security headers, body limit) but no API route, so
*API adds* is what a route's checks, parameters, handler and JSON cost on top of the
server and the middleware.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

import httpx

from hub.auth import hash_password
from hub.config import HubConfig
from hub.web.server import ServiceThread
from provisioning.mosquitto import Mosquitto
from runtime.listen import bind

FACILITY = "bench"
PASSWORD = "bench-admin-password"  # noqa: S105 - a throw-away account in a temporary store
WARMUP = 20


def config_for(broker: Mosquitto, work: Path) -> HubConfig:
    return HubConfig.model_validate(
        {
            "mqtt": {"host": broker.host, "port": broker.port, "client_id": "bench-hub"},
            "store": {"backend": "sqlite", "path": str(work / "hub.db")},
            "web": {"secret_key_file": str(work / "web-secret")},
            "homeassistant": {"enabled": False},
            "facilities": [
                {
                    "id": FACILITY,
                    "name": "Benchmark",
                    "capacity": 1000,
                    "doors": [
                        {"id": "gate", "name": "Gate", "direction": "entry", "nodes": ["gate-1"]}
                    ],
                }
            ],
        }
    )


def _static_path(client: httpx.Client) -> str:
    page = client.get(f"/facilities/{FACILITY}").text
    start = page.index('href="/static/')
    return page[start + 6 : page.index('"', start + 6)]


def rows(client: httpx.Client, token: str) -> list[tuple[str, Callable[[], httpx.Response]]]:
    base = f"/api/v1/facilities/{FACILITY}"
    write = {"X-CSRF-Token": token}
    static = _static_path(client)
    capacities = iter(range(10**9))
    return [
        ("static file (baseline)", lambda: client.get(static)),
        ("GET /api/v1/session", lambda: client.get("/api/v1/session")),
        ("GET .../occupancy", lambda: client.get(f"{base}/occupancy")),
        ("GET .../facilities/{id}", lambda: client.get(base)),
        ("GET .../events?limit=50", lambda: client.get(f"{base}/events", params={"limit": 50})),
        ("GET .../alerts", lambda: client.get(f"{base}/alerts")),
        (
            "PUT .../capacity",
            lambda: client.put(
                f"{base}/capacity",
                json={"capacity": 500 + next(capacities) % 500},
                headers=write,
            ),
        ),
        (
            "PUT .../capacity, bad body (422)",
            lambda: client.put(f"{base}/capacity", json={"capcity": 5}, headers=write),
        ),
        (
            "GET .../events?limit=0 (400)",
            lambda: client.get(f"{base}/events", params={"limit": 0}),
        ),
    ]


def measure(rounds: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="pintu-bench-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker")
        broker.start()
        service: ServiceThread | None = None
        try:
            service = ServiceThread(config_for(broker, work), sock=bind("127.0.0.1", 0)).start()
            service.hub.store.add_user("admin", hash_password(PASSWORD), "admin")
            with httpx.Client(base_url=service.url, timeout=30) as client:
                token = client.get("/api/v1/session").json()["csrf_token"]
                answer = client.post(
                    "/api/v1/session",
                    json={"username": "admin", "password": PASSWORD},
                    headers={"X-CSRF-Token": token},
                )
                answer.raise_for_status()
                token = answer.json()["csrf_token"]
                table = rows(client, token)
                times: dict[str, list[float]] = {name: [] for name, _ in table}
                for round_ in range(WARMUP + rounds):
                    for name, send in table:
                        start = time.perf_counter()
                        response = send()
                        elapsed = (time.perf_counter() - start) * 1000
                        if response.status_code >= 500:
                            raise RuntimeError(f"{name}: {response.status_code} {response.text}")
                        if round_ >= WARMUP:
                            times[name].append(elapsed)
        finally:
            if service is not None:
                service.stop()
            broker.stop()
    return times


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def report(times: dict[str, list[float]], command: str) -> str:
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("starlette", "fastapi", "uvicorn", "httpx", "pydantic")
        if _installed(name)
    )
    lines = [
        f"Run on {platform.platform()} ({platform.machine()}), Python "
        f"{platform.python_version()}; {versions}.",
        "",
        f"Command: `{command}`",
        "",
        "| request | p50 ms | p95 ms | p50 / baseline |",
        "| --- | ---: | ---: | ---: |",
    ]
    baseline = statistics.median(next(iter(times.values())))
    for name, samples in times.items():
        p50 = statistics.median(samples)
        lines.append(f"| {name} | {p50:.2f} | {pct(samples, 95):.2f} | {p50 / baseline:.2f}x |")
    return "\n".join(lines)


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_latency",
        description="Time requests to the hub's JSON API beside a static file.",
    )
    parser.add_argument("--rounds", type=int, default=300, help="requests a row (300)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    command = "python -m bench.api_latency" + (
        f" --rounds {args.rounds}" if args.rounds != 300 else ""
    )
    print(report(measure(args.rounds), command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
