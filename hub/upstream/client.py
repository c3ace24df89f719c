"""How the staff desk asks the registry about a visitor without a phone.

A guard types the visitor's NIK (national ID number) and name; the registry answers with
the person's status colour, and the hub shows the colour only. The hub never keeps the NIK
or the name: they go to the registry and are forgotten.

``RegistryClient`` is the seam. ``LocalRegistryClient`` reads a small file of people and
stands in for the central registry in tests and demonstrations; ``HttpRegistryClient``
asks the real registry's API (docs/registry.md) and also carries the hub's sync with it:
the trust list, the status feed and the visits it pushes.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from pydantic import ValidationError

from hub.config import HttpRegistryConfig, LocalRegistryConfig, read_secret
from hub.errors import ConfigError, HubError
from hub.upstream.records import StatusChange
from protocol.checkins import AnswerBatch, CheckinBatch
from protocol.ids import SUBJECT_RE
from protocol.status import Status

logger = logging.getLogger(__name__)

Colour = Literal["green", "yellow", "red", "black"]
COLOURS: tuple[Colour, ...] = ("green", "yellow", "red", "black")
NIK_PATTERN = re.compile(r"^[0-9]{16}$")
_SUBJECT = SUBJECT_RE
# One answer for both misses, so the desk cannot be used to learn whether a NIK exists.
NOT_FOUND_REASON = "no person with this NIK and name"


class RegistryError(HubError):
    """The registry cannot be asked (unreachable, or its data is unreadable)."""


@dataclass(frozen=True)
class LookupResult:
    found: bool
    status: Colour | None  # None when not found
    subject: str | None  # the pseudonymous subject id, when the registry gives one
    reason: str


class RegistryClient(Protocol):
    async def lookup(self, nik: str, name: str) -> LookupResult:
        """The status of the person with this NIK and name; both must match."""
        ...

    async def aclose(self) -> None: ...


def normalise_nik(nik: str) -> str:
    """The NIK without the spaces and dashes people type to group its digits."""
    return re.sub(r"[\s-]", "", nik)


def normalise_name(name: str) -> str:
    """Names compare case-insensitively with runs of white space as one space."""
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class _Person:
    name: str  # normalised
    status: Colour
    subject: str | None


class LocalRegistryClient:
    """People from a CSV (``nik,name,status[,subject]``) or JSON file.

    The file is read again when it changes, so a demonstration can add people while the
    hub runs. A bad file is refused whole, naming the line, and the last good one stays.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._people: dict[str, _Person] = {}
        self._stamp: tuple[int, int] | None = None
        self._reload()

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
        except OSError as err:
            raise RegistryError(f"{self.path}: cannot read the people file: {err}") from err
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                text = self.path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise RegistryError(f"{self.path}: cannot read the people file: {err}") from err
            people = parse_people(text, str(self.path))
            self._people, self._stamp = people, stamp
        logger.info("%s: %d people for desk lookups", self.path, len(people))

    async def lookup(self, nik: str, name: str) -> LookupResult:
        try:
            self._reload()
        except (RegistryError, ConfigError) as err:
            if self._stamp is None:
                raise
            logger.error("keeping the last good people file: %s", err)
        person = self._people.get(normalise_nik(nik))
        if person is None or person.name != normalise_name(name):
            return LookupResult(False, None, None, NOT_FOUND_REASON)
        return LookupResult(True, person.status, person.subject, "found")

    async def aclose(self) -> None:
        return None


def parse_people(text: str, where: str) -> dict[str, _Person]:
    """The people in a CSV or JSON text, by NIK; ``ConfigError`` naming the bad line."""
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{where}:{err.lineno}: not valid JSON: {err.msg}") from err
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ConfigError(f"{where}: expected a JSON list of objects")
        numbered = [(f"entry {i}", row) for i, row in enumerate(rows, start=1)]
    else:
        reader = csv.DictReader(io.StringIO(text))
        fields = set(reader.fieldnames or [])
        missing = {"nik", "name", "status"} - fields
        if missing:
            raise ConfigError(f"{where}:1: the header lacks {', '.join(sorted(missing))}")
        numbered = [(f"line {reader.line_num}", dict(row)) for row in reader]
    people: dict[str, _Person] = {}
    for at, row in numbered:
        nik = normalise_nik(str(row.get("nik") or ""))
        name = normalise_name(str(row.get("name") or ""))
        status = str(row.get("status") or "").strip().lower()
        subject = str(row.get("subject") or "").strip().lower() or None
        if not NIK_PATTERN.match(nik):
            raise ConfigError(f"{where}: {at}: nik must be 16 digits")
        if not name:
            raise ConfigError(f"{where}: {at}: name is empty")
        if status not in COLOURS:
            raise ConfigError(f"{where}: {at}: status must be one of {', '.join(COLOURS)}")
        if subject is not None and not _SUBJECT.match(subject):
            raise ConfigError(f"{where}: {at}: subject must be 24 hex digits")
        if nik in people:
            raise ConfigError(f"{where}: {at}: nik appears twice")
        people[nik] = _Person(name, status, subject)
    return people


def make_registry_client(
    config: LocalRegistryConfig | HttpRegistryConfig | None,
) -> RegistryClient | None:
    """The client the config names; None without a ``[registry]`` section."""
    if config is None:
        return None
    if isinstance(config, HttpRegistryConfig):
        return HttpRegistryClient.from_config(config)
    try:
        return LocalRegistryClient(config.path)
    except RegistryError as err:
        raise ConfigError(str(err)) from err


# --- the central registry over HTTP ---------------------------------------------------------
class RegistryUnavailable(RegistryError):
    """The registry cannot be reached now (network, timeout, 5xx): try again later."""


class RegistryRefused(RegistryError):
    """The registry answered a request with a 4xx: the request or the token is wrong.

    ``problems`` lists each bad field the registry named (``visits[3].door_id``).
    """

    def __init__(
        self, status: int, error: str, detail: str, problems: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(f"the registry refused the request ({status} {error}): {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.problems = problems or []


@dataclass(frozen=True)
class Fetched:
    """A document the hub revalidates by its entity tag."""

    body: bytes | None  # None: not modified since ``etag``
    etag: str | None


@dataclass(frozen=True)
class FeedPage:
    changes: list[StatusChange]
    next: int
    more: bool
    size: int  # bytes received


@dataclass(frozen=True)
class PushAnswer:
    stored: int
    duplicates: int


_STATUSES = {s.label: s for s in Status}
# A batch of check-ins is at most MAX_BATCH of about 400 bytes each.
MAX_CHANNEL_BYTES = 256 * 1024
_API = "/api/v1"


class HttpRegistryClient:
    """The central registry's API with the hub's tokens (``Authorization: Bearer rh_...``).

    A hub token speaks for one facility; ``tokens`` maps each facility to its own. Desk
    lookups and the sync (trust list, status feed) may use any of them; visits go with
    their facility's. Transport failures and 5xx answers are ``RegistryUnavailable``,
    4xx answers ``RegistryRefused``, answers that do not follow the API ``RegistryError``.
    """

    def __init__(
        self,
        url: str,
        tokens: Mapping[str, str],
        *,
        timeout_s: float = 5.0,
        sync_timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not tokens:
            raise ConfigError("the http registry needs at least one hub token")
        self.url = url.rstrip("/")
        self.tokens = dict(tokens)
        self._default = next(iter(self.tokens.values()))
        self.timeout_s = timeout_s
        self.sync_timeout_s = sync_timeout_s
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            headers={"User-Agent": "pintu-hub"},
            follow_redirects=False,
        )

    @classmethod
    def from_config(
        cls, config: HttpRegistryConfig, facility_ids: Sequence[str] = ()
    ) -> HttpRegistryClient:
        """The client for ``config``; its token files are read now (``ConfigError`` if not)."""
        if config.url.startswith("http://"):
            logger.warning(
                "the registry is reached over plain HTTP (%s): fine on this machine only",
                config.url,
            )
        return cls(
            config.url,
            read_tokens(config, facility_ids),
            timeout_s=config.timeout_s,
            sync_timeout_s=config.sync_timeout_s,
        )

    def _token(self, facility_id: str | None) -> str:
        if facility_id is None:
            return self._default
        try:
            return self.tokens[facility_id]
        except KeyError:
            raise RegistryError(f"no registry token for facility {facility_id!r}") from None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        facility_id: str | None = None,
        timeout_s: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {self._token(facility_id)}",
            **kwargs.pop("headers", {}),
        }
        try:
            response = await self._http.request(
                method,
                f"{_API}{path}",
                headers=headers,
                timeout=httpx.Timeout(timeout_s or self.timeout_s),
                **kwargs,
            )
        except httpx.TimeoutException as err:
            raise RegistryUnavailable(
                f"{method} {path}: the registry did not answer in time"
            ) from err
        except httpx.HTTPError as err:
            raise RegistryUnavailable(f"{method} {path}: cannot reach the registry: {err}") from err
        if response.status_code >= 500:
            raise RegistryUnavailable(
                f"{method} {path}: the registry answered {response.status_code}: "
                f"{_detail(response)}"
            )
        if response.status_code >= 400:
            error, detail, problems = _error_of(response)
            raise RegistryRefused(response.status_code, error, detail, problems)
        if 300 <= response.status_code < 400 and response.status_code != 304:
            # Tokens are never sent on to wherever a redirect points.
            raise RegistryError(
                f"{method} {path}: the registry redirects to "
                f"{response.headers.get('location', '?')}: set [registry] url to that address"
            )
        return response

    async def lookup(self, nik: str, name: str) -> LookupResult:
        """The person's colour; both NIK and name must match (the registry compares)."""
        try:
            response = await self._request(
                "POST",
                "/lookup",
                json={"nik": nik, "name": name},
                # The registry audits every lookup with who asked and why.
                headers={"X-Pintu-Purpose": "manual check at a facility's desk"},
            )
        except RegistryRefused as err:
            if err.status == 422:
                # An implausible NIK (a typo): say what is wrong, so the guard can fix it.
                return LookupResult(
                    False, None, None, f"the registry refused the NIK: {err.detail}"
                )
            raise
        data = _json_object(response, "lookup")
        if data.get("found") is not True:
            return LookupResult(False, None, None, NOT_FOUND_REASON)
        status = data.get("status")
        subject = data.get("subject")
        if status not in COLOURS or not (isinstance(subject, str) and _SUBJECT.match(subject)):
            raise RegistryError("the registry's lookup answer is malformed")
        return LookupResult(True, status, subject, "found")

    async def trust(self, etag: str | None) -> Fetched:
        """The trust list, or ``body=None`` when it has not changed since ``etag``."""
        return await self._fetch("/trust", etag)

    async def door_list(self, name: str, etag: str | None) -> Fetched:
        """A signed door list (``keys``, ``trust`` or ``status``), or ``body=None`` when it
        has not changed since ``etag``; without ``etag``, a freshly signed copy."""
        return await self._fetch(f"/lists/{name}", etag)

    async def _fetch(self, path: str, etag: str | None) -> Fetched:
        headers = {"If-None-Match": etag} if etag else {}
        response = await self._request("GET", path, headers=headers, timeout_s=self.sync_timeout_s)
        if response.status_code == 304:
            return Fetched(None, response.headers.get("etag") or etag)
        return Fetched(response.content, response.headers.get("etag"))

    async def statuses(self, since: int, limit: int) -> FeedPage:
        """One page of the status feed after ``since``."""
        response = await self._request(
            "GET",
            "/statuses",
            params={"since": since, "limit": limit},
            timeout_s=self.sync_timeout_s,
        )
        # Parsing 10,000 changes takes tens of milliseconds: not on the event loop.
        return await asyncio.to_thread(parse_feed_page, response.content, since)

    async def push_visits(
        self, facility_id: str, visits: Sequence[Mapping[str, Any]]
    ) -> PushAnswer:
        """Push closed visits with the facility's token; a replay counts as duplicates."""
        response = await self._request(
            "POST",
            "/visits",
            facility_id=facility_id,
            json=list(visits),
            timeout_s=self.sync_timeout_s,
        )
        data = _json_object(response, "visits")
        stored, duplicates = data.get("stored"), data.get("duplicates")
        if not isinstance(stored, int) or not isinstance(duplicates, int):
            raise RegistryError("the registry's answer to a visit push is malformed")
        return PushAnswer(stored, duplicates)

    async def checkins(self, facility_id: str, wait_s: float) -> CheckinBatch:
        """The facility's phone check-ins, as soon as one comes or after ``wait_s`` (the
        channel: the request stays open, so the hub needs only outbound connections)."""
        response = await self._request(
            "GET",
            "/hub/checkins",
            facility_id=facility_id,
            params={"wait": wait_s},
            timeout_s=wait_s + self.timeout_s,
        )
        if len(response.content) > MAX_CHANNEL_BYTES:
            raise RegistryError("the registry's check-ins are larger than any batch can be")
        try:
            return CheckinBatch.model_validate_json(response.content, strict=True)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise RegistryError(f"the registry's check-ins are malformed: {where}: "
                                f"{first['msg']}") from err  # fmt: skip

    async def answer_checkins(self, facility_id: str, answers: AnswerBatch) -> int:
        """Send the hub's decisions on phone check-ins; how many the registry kept."""
        response = await self._request(
            "POST",
            "/hub/checkins/answers",
            facility_id=facility_id,
            content=answers.model_dump_json(),
            headers={"Content-Type": "application/json"},
        )
        data = _json_object(response, "check-in answers")
        stored = data.get("stored")
        if not isinstance(stored, int):
            raise RegistryError("the registry's answer to check-in answers is malformed")
        return stored

    async def aclose(self) -> None:
        await self._http.aclose()


def read_tokens(config: HttpRegistryConfig, facility_ids: Sequence[str] = ()) -> dict[str, str]:
    """Each facility's hub token (from its file); ``ConfigError`` naming a file not read."""
    files: dict[str, Path] = dict(config.credentials)
    if not files and config.credentials_file is not None:
        # One facility (the config allows no more with a single token file).
        for facility_id in facility_ids or ["*"]:
            files[facility_id] = config.credentials_file
    if not files:
        raise ConfigError("registry.credentials_file: the http registry needs the hub token")
    tokens = {}
    for facility_id, path in files.items():
        token = read_secret(path)
        if not token:
            raise ConfigError(f"{path}: the registry token file is empty")
        tokens[facility_id] = token
    return tokens


def parse_feed_page(content: bytes, since: int) -> FeedPage:
    """A page of ``GET /statuses`` checked whole; ``RegistryError`` naming the first bad entry.

    Hand-checked rather than through a model: a fresh hub reads a million of these.
    """
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError) as err:
        raise RegistryError(f"the status feed page is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise RegistryError("the status feed page is not a JSON object")
    items, next_cursor, more = data.get("changes"), data.get("next"), data.get("more")
    if not isinstance(items, list) or type(next_cursor) is not int or type(more) is not bool:
        raise RegistryError("the status feed page lacks changes, next or more")
    times: dict[str, int] = {}
    changes: list[StatusChange] = []
    previous = since
    for i, item in enumerate(items):
        try:
            subject, label, doses = item["subject"], item["status"], item["doses"]
            cursor, changed = item["cursor"], item["changed_at"]
            if type(subject) is not str or not _SUBJECT.match(subject):
                raise ValueError("subject is not 24 lower-case hex digits")
            status = _STATUSES[label]
            if type(doses) is not int or doses < 0:
                raise ValueError("doses is not a whole number")
            if type(cursor) is not int or cursor <= previous:
                raise ValueError("cursor does not grow")
            changed_at = times.get(changed)
            if changed_at is None:
                changed_at = times[changed] = _unix(changed)
        except (KeyError, TypeError, ValueError) as err:
            raise RegistryError(f"the status feed's changes[{i}] is malformed: {err}") from err
        previous = cursor
        changes.append(StatusChange(subject, status, doses, changed_at, cursor))
    if next_cursor < previous:
        raise RegistryError("the status feed's next cursor is behind its changes")
    return FeedPage(changes, next_cursor, more, len(content))


def _unix(text: Any) -> int:
    if type(text) is not str:
        raise ValueError("changed_at is not a time")
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("changed_at has no UTC offset")
    return int(value.timestamp())


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError) as err:
        raise RegistryError(f"the registry's {what} answer is not JSON") from err
    if not isinstance(data, dict):
        raise RegistryError(f"the registry's {what} answer is not a JSON object")
    return data


def _error_of(response: httpx.Response) -> tuple[str, str, list[dict[str, str]]]:
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        return "error", response.text[:200] or response.reason_phrase, []
    problems = data.get("problems")
    checked = (
        [
            {"field": str(p.get("field", "")), "message": str(p.get("message", ""))}
            for p in problems
            if isinstance(p, dict)
        ]
        if isinstance(problems, list)
        else []
    )
    return str(data.get("error", "error")), str(data.get("detail", ""))[:500], checked


def _detail(response: httpx.Response) -> str:
    return _error_of(response)[1] or response.reason_phrase
