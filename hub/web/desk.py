"""The staff desk: check in a visitor without a phone, by NIK and name.

1. A guard asks the registry about a NIK and name. The answer is a colour, nothing else;
   the hub keeps a short-lived lookup id for it, never the NIK or the name.
2. The guard admits the visitor through a door: the hub tells a node at that door to
   open, and the node records the passage as a ``manual`` event, which is what counts.
   The hub does not count it itself, so a passage is never counted twice.

Every lookup and every admission is audited with the staff member's name.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass

from hub.errors import CommandError, CommandTimeout, NotFound
from hub.service import Hub
from hub.upstream.client import Colour, RegistryClient, RegistryError
from hub.web.errors import ApiError

logger = logging.getLogger(__name__)

ADMITTED: frozenset[str] = frozenset({"green", "yellow"})
_REFUSED_WHY = {
    "red": "a red status (not vaccinated) is not admitted",
    "black": "a black status (positive or close contact) is never admitted",
}


@dataclass
class _Lookup:
    facility_id: str
    user: str
    status: Colour
    subject: str | None
    expires: float
    in_use: bool = False
    used: bool = False


@dataclass(frozen=True)
class LookupAnswer:
    found: bool
    status: Colour | None
    reason: str
    lookup_id: str | None  # pass to ``admit``; only when found
    admissible: bool


@dataclass(frozen=True)
class Admission:
    door_id: str
    status: Colour
    message: str


class Desk:
    def __init__(
        self,
        hub: Hub,
        registry: RegistryClient | None,
        *,
        command_timeout_s: float = 5.0,
        lookup_ttl_s: float = 300.0,
        max_lookups: int = 1000,
        lookups_per_minute: int = 20,
    ) -> None:
        self.hub = hub
        self.registry = registry
        self.command_timeout_s = command_timeout_s
        self.lookup_ttl_s = lookup_ttl_s
        self.max_lookups = max_lookups
        self.lookups_per_minute = lookups_per_minute
        self._lookups: dict[str, _Lookup] = {}
        self._recent: dict[str, deque[float]] = {}

    async def _audit(
        self, user: str, action: str, facility_id: str, target: str | None, detail: str
    ) -> None:
        await asyncio.to_thread(
            self.hub.store.audit,
            user,
            action,
            facility_id=facility_id,
            target=target,
            detail=detail,
        )

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for key in [k for k, v in self._lookups.items() if v.expires < now]:
            del self._lookups[key]
        while len(self._lookups) >= self.max_lookups:
            del self._lookups[next(iter(self._lookups))]

    def _pace(self, user: str) -> None:
        """At most ``lookups_per_minute`` per staff member: the desk checks in visitors,
        it is not a way to sift the registry for people."""
        now = time.monotonic()
        recent = self._recent.setdefault(user, deque())
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= self.lookups_per_minute:
            wait = max(1, int(60 - (now - recent[0]) + 0.999))
            raise ApiError(
                429,
                "too_many_lookups",
                f"Too many lookups in a minute; try again in {wait} s.",
                headers={"Retry-After": str(wait)},
            )
        recent.append(now)

    async def lookup(self, facility_id: str, user: str, nik: str, name: str) -> LookupAnswer:
        self.hub.facility(facility_id)
        self._pace(user)
        if self.registry is None:
            raise ApiError(
                409, "no_registry", "No registry is configured: add [registry] to hub.toml."
            )
        try:
            result = await self.registry.lookup(nik, name)
        except RegistryError as err:
            logger.error("registry lookup failed: %s", err)
            await self._audit(user, "desk.lookup", facility_id, None, "registry unavailable")
            raise ApiError(
                503, "registry_unavailable", "The registry cannot be asked now."
            ) from err
        if not result.found or result.status is None:
            await self._audit(user, "desk.lookup", facility_id, None, "not found")
            return LookupAnswer(False, None, result.reason, None, False)
        self._forget_expired()
        lookup_id = secrets.token_urlsafe(16)
        self._lookups[lookup_id] = _Lookup(
            facility_id, user, result.status, result.subject, time.monotonic() + self.lookup_ttl_s
        )
        await self._audit(
            user, "desk.lookup", facility_id, result.subject, f"found: {result.status}"
        )
        admissible = result.status in ADMITTED
        reason = "may enter" if admissible else _REFUSED_WHY.get(result.status, "not admitted")
        return LookupAnswer(True, result.status, reason, lookup_id, admissible)

    def _door_check(self, facility_id: str, door_id: str) -> None:
        facility = self.hub.settings(facility_id)
        door = facility.door(door_id)
        if facility.doors and door is None:
            raise ApiError(404, "not_found", f"Facility {facility_id} has no door {door_id}.")
        if door is not None and door.direction == "exit":
            raise ApiError(409, "exit_door", f"{door.name} is an exit; choose an entrance.")

    async def admit(self, facility_id: str, user: str, lookup_id: str, door_id: str) -> Admission:
        """Open ``door_id`` for the person of ``lookup_id``; the node's event counts them."""
        lookup = self._lookups.get(lookup_id)
        if (
            lookup is None
            or lookup.expires < time.monotonic()
            or lookup.facility_id != facility_id
            or lookup.user != user
        ):
            raise ApiError(
                404, "lookup_not_found", "That lookup has expired; look the person up again."
            )
        if lookup.used or lookup.in_use:
            raise ApiError(409, "already_admitted", "This person has already been checked in.")
        if lookup.status not in ADMITTED:
            raise ApiError(409, "not_admitted", _REFUSED_WHY.get(lookup.status, "not admitted"))
        self._door_check(facility_id, door_id)
        occupancy = await self.hub.occupancy(facility_id)
        if occupancy.full:
            raise ApiError(
                409, "facility_full", f"The facility is full ({occupancy.occupancy} inside)."
            )
        # Held while the door is asked, so a double tap cannot admit twice.
        lookup.in_use = True
        try:
            await self._open(
                facility_id, user, door_id, f"desk check-in by {user}: {lookup.status}"
            )
        except ApiError as err:
            await self._audit(
                user, "desk.admit", facility_id, door_id, f"{lookup.status}: failed: {err.error}"
            )
            raise
        finally:
            lookup.in_use = False
        lookup.used = True
        detail = str(lookup.status)
        if lookup.subject:
            detail += f", subject {lookup.subject}"
        await self._audit(user, "desk.admit", facility_id, door_id, detail)
        return Admission(door_id, lookup.status, "The door is open: let them through.")

    async def open_door(self, facility_id: str, user: str, door_id: str, reason: str) -> None:
        """A guard's remote open (the node records the passage as a manual event)."""
        self._door_check_exists(facility_id, door_id)
        await self._open(facility_id, user, door_id, f"remote open by {user}: {reason}")

    def _door_check_exists(self, facility_id: str, door_id: str) -> None:
        facility = self.hub.settings(facility_id)
        if facility.doors and facility.door(door_id) is None:
            raise ApiError(404, "not_found", f"Facility {facility_id} has no door {door_id}.")

    async def _open(self, facility_id: str, user: str, door_id: str, reason: str) -> None:
        try:
            reply = await self.hub.open_door(
                facility_id, door_id, user, reason[:200], timeout_s=self.command_timeout_s
            )
        except NotFound as err:
            raise ApiError(409, "no_node", f"No door node is known at {door_id}.") from err
        except CommandTimeout as err:
            raise ApiError(
                504,
                "node_timeout",
                f"The door did not answer within {self.command_timeout_s:g} s. It may be "
                "offline: check the door, then try again or let the person in by hand.",
            ) from err
        except CommandError as err:
            raise ApiError(503, "node_unreachable", f"The door cannot be reached: {err}") from err
        if not reply.ok:
            raise ApiError(409, "node_refused", f"The door refused: {reply.error or 'no reason'}")
