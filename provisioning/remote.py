"""The hub's and the registry's HTTP APIs as the technician's tools call them.

Every failure becomes one :class:`RemoteError` line: the service cannot be reached, or it
answered 4xx/5xx, with the reason it gave (``{"error": code, "detail": ...}``) quoted.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Self

import httpx

from provisioning.errors import RemoteError

logger = logging.getLogger(__name__)

TIMEOUT_S = 15.0


def _detail(detail: Any) -> str:
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and "message" in item:
                parts.append(f"{item.get('field', '?')}: {item['message']}")
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


class Api:
    """A JSON API at ``base_url`` (``/api/v1`` is added); raises :class:`RemoteError`."""

    def __init__(self, base_url: str, what: str, *, timeout_s: float = TIMEOUT_S) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise RemoteError(f"the {what} URL must start with http:// or https://: {base_url!r}")
        self.what = what
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(base_url=f"{self.base_url}/api/v1", timeout=timeout_s)
        self.headers: dict[str, str] = {}

    def _send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """The answer to a request; a refusal is a ``RemoteError`` with the reason given."""
        try:
            response = self.client.request(method, path, json=body, headers=self.headers)
        except httpx.HTTPError as err:
            raise RemoteError(
                f"the {self.what} at {self.base_url} cannot be reached: {err}"
            ) from err
        if response.status_code >= 400:
            try:
                data = response.json() if response.content else {}
            except ValueError:
                data = {}
            code = data.get("error") if isinstance(data, dict) else None
            detail = _detail(data.get("detail")) if isinstance(data, dict) else ""
            problems = data.get("problems") if isinstance(data, dict) else None
            if isinstance(problems, list) and len(problems) > 1:
                # Every problem, not the first and "(and 3 more problems)": the technician
                # mends them all before trying again.
                detail = _detail(problems)
            reason = f"{code}: {detail}" if code and detail else (code or response.reason_phrase)
            raise RemoteError(
                f"the {self.what} refused {method} {path}: {response.status_code} {reason}",
                response.status_code,
                code,
            )
        return response

    def fetch(self, path: str) -> bytes:
        """A file the API serves (a poster): its bytes."""
        return self._send("GET", path).content

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = self._send(method, path, body)
        try:
            data = response.json() if response.content else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            raise RemoteError(f"the {self.what} answered {method} {path} with no JSON object")
        return data

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class HubAdmin(Api):
    """The facility hub, logged in as a hub user (the session cookie and its CSRF token)."""

    def __init__(self, base_url: str, *, timeout_s: float = TIMEOUT_S) -> None:
        super().__init__(base_url, "hub", timeout_s=timeout_s)

    def login(self, username: str, password: str) -> str:
        token = self.call("GET", "/session").get("csrf_token", "")
        self.headers = {"X-CSRF-Token": str(token)}
        session = self.call("POST", "/session", {"username": username, "password": password})
        self.headers = {"X-CSRF-Token": str(session.get("csrf_token", ""))}
        role = str(session.get("role"))
        if role != "admin":
            raise RemoteError(f"hub user {username!r} is a {role}; enrolling a node needs an admin")
        return role

    def add_enrolment(self, lookup_id: str, sealed: str, ttl_s: int, node_id: str) -> str:
        """File a sealed bundle; the hub's expiry time (RFC 3339)."""
        body = {"lookup_id": lookup_id, "sealed": sealed, "ttl_s": ttl_s, "node_id": node_id}
        return str(self.call("POST", "/enrolments", body)["expires_at"])
