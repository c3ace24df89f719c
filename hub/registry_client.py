"""How the staff desk asks the registry about a visitor without a phone.

A guard types the visitor's NIK (national ID number) and name; the registry answers with
the person's status colour, and the hub shows the colour only. The hub never keeps the NIK
or the name: they go to the registry and are forgotten.

``RegistryClient`` is the seam. ``LocalRegistryClient`` reads a small file of people and
stands in for the central registry in tests and demonstrations; an HTTP client for the
real registry fits the same protocol (``[registry] kind = "http"`` is accepted in the
config and refused at start until it exists).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from hub.config import HttpRegistryConfig, LocalRegistryConfig
from hub.errors import ConfigError, HubError

logger = logging.getLogger(__name__)

Colour = Literal["green", "yellow", "red", "black"]
COLOURS: tuple[Colour, ...] = ("green", "yellow", "red", "black")
NIK_PATTERN = re.compile(r"^[0-9]{16}$")
_SUBJECT = re.compile(r"^[0-9a-f]{24}$")
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
        raise ConfigError(
            "registry kind 'http' is not yet supported; use kind = \"local\" with a people file"
        )
    try:
        return LocalRegistryClient(config.path)
    except RegistryError as err:
        raise ConfigError(str(err)) from err
