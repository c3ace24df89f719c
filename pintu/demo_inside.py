"""Who is inside the demo's facility, as the hub counted them: the exit doors' visitors.

In a real building only people who came in go out. The demo's exit doors therefore show
the passes of the people inside: the demo reads the hub's events through its API, logged
in as its staff account like any client, keeps every subject an event counted in until
an event counts them out, and writes their passes to the file the exit doors' synthetic
cameras follow.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger(__name__)

API = "/api/v1"
PAGE = 200


class InsideTracker:
    def __init__(
        self,
        hub_url: str,
        username: str,
        password: str,
        facility_id: str,
        passes: dict[str, str],
        out: Path,
        timeout_s: float = 5.0,
    ) -> None:
        self.facility_id = facility_id
        self.passes = passes  # subject (hex) -> the pass text that person holds up
        self.out = out
        self.inside: dict[str, str] = {}
        self.left: set[str] = set()  # subjects counted out at least once: a whole visit
        self._credentials = {"username": username, "password": password}
        self._http = httpx.Client(base_url=hub_url, timeout=timeout_s)
        self._csrf: str | None = None
        self._last_id = 0
        self._written: list[str] | None = None
        self.write()

    def close(self) -> None:
        self._http.close()

    def _log_in(self) -> None:
        token = self._http.get(f"{API}/session").json()["csrf_token"]
        answer = self._http.post(
            f"{API}/session", json=self._credentials, headers={"X-CSRF-Token": token}
        )
        answer.raise_for_status()
        self._csrf = str(answer.json()["csrf_token"])

    def _events(self) -> list[dict[str, Any]]:
        """The events stored since the last call, oldest first."""
        if self._csrf is None:
            self._log_in()
        url = f"{API}/facilities/{self.facility_id}/events"
        response = self._http.get(url, params={"limit": PAGE})
        if response.status_code == 401:  # the session ended: log in again
            self._csrf = None
            self._log_in()
            response = self._http.get(url, params={"limit": PAGE})
        response.raise_for_status()
        events: list[dict[str, Any]] = response.json()["events"]
        fresh = [e for e in events if int(e["id"]) > self._last_id]
        if fresh:
            self._last_id = max(int(e["id"]) for e in fresh)
        return sorted(fresh, key=lambda e: int(e["id"]))

    def poll(self) -> int:
        """Read what the hub counted since the last poll; how many are inside now."""
        try:
            events = self._events()
        except (httpx.HTTPError, KeyError, ValueError) as err:
            logger.warning("cannot read the hub's events: %s", err)
            return len(self.inside)
        for event in events:
            subject = event.get("subject")
            if not subject:
                continue
            if event.get("delta") == 1 and subject in self.passes:
                self.inside[subject] = self.passes[subject]
            elif event.get("delta") == -1:
                self.inside.pop(subject, None)
                self.left.add(subject)
        self.write()
        return len(self.inside)

    def write(self) -> None:
        codes = sorted(self.inside.values())
        if codes == self._written:
            return
        # Whole or not at all: a camera reading it halfway must not see half a list.
        partial = self.out.with_suffix(".tmp")
        partial.write_text("".join(f"{c}\n" for c in codes), encoding="utf-8")
        os.replace(partial, self.out)
        self._written = codes
