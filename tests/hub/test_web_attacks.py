"""Attacks on the hub's web side over real HTTP (the hub and its server as in production):
huge request bodies and floods of logins that each cost a password hash."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from argon2 import PasswordHasher
from pydantic import ValidationError

import hub.auth
from hub.config import HttpRegistryConfig
from runtime.throttle import LoginThrottle

from . import test_web
from .test_web import PASSWORDS, csrf

web = test_web.web  # the running hub service of those tests, as a fixture here too

Factory = Callable[..., Any]
MiB = 1024 * 1024


def _send_until_answered(url: str, head: bytes, chunk: bytes, most: int) -> tuple[bytes, int]:
    """Send ``head`` then ``chunk`` after ``chunk`` (up to ``most`` bytes) until the server
    answers; the answer's first bytes and how much of the body was sent by then."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        while sent < most:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed while we were still sending
                break
            sent += len(chunk)
        answer = sock.recv(4096)
    return answer, sent


def test_a_huge_login_body_is_refused_while_it_streams(web: Factory) -> None:
    """Finding 7: a 300 MB login body took the hub from 136 MB to 727 MB before a 400."""
    running = web()
    host = urlsplit(running.url).netloc.encode()
    limit = running.hub.config.web.max_body_bytes
    # Declared too large: refused before a byte of the body is read.
    declared = (
        b"POST /api/v1/session HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 314572800\r\n\r\n"
    )
    answer, _ = _send_until_answered(running.url, declared, b"x" * 65536, 0)
    assert answer.startswith(b"HTTP/1.1 413")
    # Chunked, so no length to judge by: counted as it arrives, refused past the limit.
    # Anyone can get a session and its CSRF token, so the attacker sends both.
    with httpx.Client(base_url=running.url) as client:
        token = client.get("/api/v1/session").json()["csrf_token"]
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items()).encode()
    chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
    for path, media in (
        (b"/api/v1/session", b"application/json"),
        (b"/login", b"application/x-www-form-urlencoded"),
    ):
        head = (
            b"POST " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n"
            b"Content-Type: " + media + b"\r\nTransfer-Encoding: chunked\r\n"
            b"Cookie: " + cookie + b"\r\nX-CSRF-Token: " + token.encode() + b"\r\n\r\n"
        )
        answer, sent = _send_until_answered(running.url, head, chunk, 300 * MiB)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        # The socket buffers take a few MB more than the hub read; nowhere near 300 MB.
        assert sent < limit + 16 * MiB, sent
    # The hub is still there for everyone else.
    running.login("admin1")


@pytest.fixture
def slow_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashes slow enough that concurrent logins overlap on any machine."""
    monkeypatch.setattr(
        hub.auth, "HASHER", PasswordHasher(time_cost=40, memory_cost=1024, parallelism=1)
    )
    hub.auth._dummy_hash.cache_clear()


def test_a_flood_of_logins_is_bounded_and_told_to_come_back(
    slow_hashes: None, web: Factory
) -> None:
    """Finding 8: every login ran a 64 MiB hash, with nothing bounding how many at once."""
    running = web()
    names = [f"nobody-{n}" for n in range(16)]
    start = threading.Barrier(len(names))
    answers: dict[str, httpx.Response] = {}

    def attempt(name: str) -> None:
        with httpx.Client(base_url=running.url, timeout=60) as client:
            token = client.get("/api/v1/session").json()["csrf_token"]
            start.wait(10)
            answers[name] = client.post(
                "/api/v1/session",
                json={"username": name, "password": "not-the-password"},
                headers=csrf(token),
            )

    threads = [threading.Thread(target=attempt, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    codes = sorted(r.status_code for r in answers.values())
    assert len(codes) == len(names)
    busy = [r for r in answers.values() if r.status_code == 429]
    # At most four hashes ran at once; the others were told to retry, at no cost.
    assert codes.count(401) >= 1 and busy, codes
    assert codes.count(401) + len(busy) == len(names)
    for response in busy:
        assert response.json()["error"] == "busy"
        assert response.headers["retry-after"] == "1"
    # The owner's good login still works once the flood is over.
    deadline = time.monotonic() + 30
    while True:
        try:
            running.login("admin1")
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def test_hashes_are_sized_for_a_small_hub_and_old_ones_redone_at_login(web: Factory) -> None:
    running = web()
    store = running.hub.store
    old = PasswordHasher().hash(PASSWORDS["guard1"])  # argon2-cffi's default: 64 MiB, t=3
    assert "m=65536" in old
    store.update_user("guard1", password_hash=old)
    running.login("guard1")
    user = store.get_user("guard1")
    assert user is not None
    assert "$argon2id$" in user.password_hash
    assert "m=19456,t=2,p=1" in user.password_hash
    running.login("guard1")  # and the new hash works


def _login(url: str, username: str, password: str, forwarded: str | None = None) -> int:
    with httpx.Client(base_url=url, timeout=30) as client:
        token = client.get("/api/v1/session").json()["csrf_token"]
        headers = csrf(token)
        if forwarded is not None:
            headers["X-Forwarded-For"] = forwarded
        response = client.post(
            "/api/v1/session", json={"username": username, "password": password}, headers=headers
        )
        return response.status_code


def test_a_forwarded_address_is_believed_only_from_a_configured_proxy(web: Factory) -> None:
    """Finding 10: X-Forwarded-For was believed from 127.0.0.1, so a client could name a
    new address for every guess and never meet the per-address limit."""
    running = web()
    codes = [
        _login(running.url, f"name-{n}", "wrong-password", forwarded=f"10.1.{n}.1")
        for n in range(31)
    ]
    # All of them counted against the address they really came from: the 31st is refused.
    assert codes[:30] == [401] * 30
    assert codes[30] == 429


def test_guessing_from_many_addresses_never_locks_the_owner_out(web: Factory) -> None:
    """Finding 10: a lock refused the right password too, so anyone could lock anyone out."""
    running = web(web={"trusted_proxies": ["127.0.0.1"]})
    owner_desk = "192.0.2.7"
    assert _login(running.url, "admin1", PASSWORDS["admin1"], owner_desk) == 200
    # A botnet: four guesses from each of many addresses (under the per-pair limit of 5).
    codes = [
        _login(running.url, "admin1", f"guess-{n}", forwarded=f"198.51.100.{n // 4}")
        for n in range(60)
    ]
    assert 429 in codes  # the name is locked for addresses it never logged in from
    assert _login(running.url, "admin1", PASSWORDS["admin1"], "203.0.113.9") == 429
    # The owner at their usual desk still gets in.
    assert _login(running.url, "admin1", PASSWORDS["admin1"], owner_desk) == 200


def test_a_flood_of_failures_elsewhere_does_not_clear_a_lock() -> None:
    """Finding 10: 5,000 failures from other addresses emptied the bounded table, and the
    account's lock with it."""
    throttle = LoginThrottle(max_keys=100)
    for _ in range(5):
        throttle.failed("admin1", "198.51.100.1", now=0.0)
    assert throttle.retry_after("admin1", "198.51.100.1", now=1.0) > 0
    for n in range(5_000):
        throttle.failed(f"made-up-{n}", f"10.0.{n // 250}.{n % 250}", now=1.0)
    assert throttle.retry_after("admin1", "198.51.100.1", now=2.0) > 0


def test_defaults_are_safe_where_that_costs_nothing(web: Factory) -> None:
    """Finding 14: /metrics open to anyone, cookies never Secure, http:// registries."""
    running = web(web={"trusted_proxies": ["127.0.0.1"]})
    with httpx.Client(base_url=running.url, timeout=15) as client:
        # Without a metrics token, only this machine reads the metrics.
        assert client.get("/metrics").status_code == 200
        remote = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.5"})
        assert remote.status_code == 403
        assert "metrics_token_file" in remote.json()["detail"]
    web_section = running.hub.config.web
    assert web_section.host == "127.0.0.1" and not web_section.cookies_secure()
    listening = web_section.model_copy(update={"host": "0.0.0.0"})  # noqa: S104 - a config value
    assert listening.cookies_secure()
    assert HttpRegistryConfig(kind="http", url="http://127.0.0.1:8090").url
    assert HttpRegistryConfig(kind="http", url="https://registry.example").url
    with pytest.raises(ValidationError, match="https://"):
        HttpRegistryConfig(kind="http", url="http://registry.example")
