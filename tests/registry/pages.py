"""What the console's browser tests share: a ``pintu registry serve`` process with an
operator, pages opened in a real Chromium, and the checks every page must pass (axe-core
finds nothing serious, nothing scrolls sideways from 360 px up)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from registry.config import load_config
from registry.service import Registry

from ..conftest import CHROMIUM
from ..hub import axe
from ..layout import overflow
from ..processes import RegistryProcess, free_port

OPERATOR, PASSWORD = "dewi", "a long operator password"
# For a module of browser tests: ``pytestmark = needs_chromium``.
needs_chromium = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"
)
WAIT_MS = 10_000
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Server:
    """A running registry: its address, its configuration file, an operator's API token."""

    url: str
    config_path: Path
    process: RegistryProcess
    operator_token: str = ""

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        """An API call as the operator (or with ``token``); the JSON answer."""
        headers = {"Authorization": f"Bearer {token or self.operator_token}"}
        r = httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=10, **kwargs)
        r.raise_for_status()
        return r.json() if r.content else None

    def public(self, method: str, path: str, **kwargs: Any) -> Any:
        """An API call without credentials; the JSON answer."""
        r = httpx.request(method, f"{self.url}/api/v1{path}", timeout=10, **kwargs)
        r.raise_for_status()
        return r.json()

    def facilities(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/facilities")["facilities"])

    def audit(self) -> list[tuple[int, str, str, str, str]]:
        """The audit trail, read from the store the process writes."""
        registry = Registry.open(load_config(self.config_path), make_key=False)
        try:
            return registry.store.audit_entries()
        finally:
            registry.close()


def start_server(tmp: Path) -> Iterator[Server]:
    """A registry in ``tmp`` with the operator ``dewi``, serving until the generator ends."""
    port = free_port()
    config_path = tmp / "registry.toml"
    config_path.write_text(f'[web]\nhost = "127.0.0.1"\nport = {port}\n', encoding="utf-8")
    registry = Registry.open(load_config(config_path))
    try:
        registry.add_operator(OPERATOR, PASSWORD)
    finally:
        registry.close()
    process = RegistryProcess(config_path, port)
    process.start()
    server = Server(process.url, config_path, process)
    try:
        r = httpx.post(
            f"{server.url}/api/v1/login",
            json={"username": OPERATOR, "password": PASSWORD},
            timeout=10,
        )
        r.raise_for_status()
        server.operator_token = r.json()["token"]
        yield server
    finally:
        process.stop()


def open_page(
    browser: Browser, server: Server, path: str = "/", width: int = 390, locale: str = "en-GB"
) -> Page:
    # The browser's locale is what it sends as Accept-Language.
    context = browser.new_context(viewport={"width": width, "height": 844}, locale=locale)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(server.url + path)
    return page


def log_in(page: Page, server: Server, username: str, password: str) -> None:
    page.goto(server.url + "/console/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("main button[type=submit]")
    page.wait_for_url("**/console/**")


def check(page: Page) -> None:
    """The page as it is now: nothing serious for axe-core, no sideways scroll at 360 px."""
    if axe.available():
        result = axe.check(page)
        assert axe.severe(result) == [], f"{page.url}: {axe.severe(result)}"
    size = page.viewport_size
    page.set_viewport_size({"width": 360, "height": 740})
    page.wait_for_function("() => window.innerWidth === 360", timeout=WAIT_MS)
    wide = overflow(page)
    assert wide[0] <= wide[1], f"{page.url} at 360 px is {wide[0]} px wide: {wide[2]}"
    if size is not None:
        page.set_viewport_size(size)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


def browserless(server: Server) -> httpx.Client:
    """A plain HTTP client that reads the pages in English; close it after use."""
    return httpx.Client(base_url=server.url, timeout=10, headers={"Accept-Language": "en"})


def http_login(server: Server, username: str, password: str) -> httpx.Client:
    """A plain HTTP client logged in to the console (its session cookie kept)."""
    client = browserless(server)
    token = csrf_of(client.get("/console/login").text)
    r = client.post(
        "/console/login",
        data={"csrf_token": token, "username": username, "password": password},
    )
    assert r.status_code == 303, r.text
    return client
