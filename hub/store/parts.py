"""The hub's store: its parts, one per concern, written once for both databases; each
database's store (``hub.store.sqlite.SqliteStore``, ``hub.store.postgres.PgStore``) adds
how it connects, writes and retries."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Select

from hub.config import FacilityConfig
from hub.store.accounts import Accounts
from hub.store.alerts import Alerts
from hub.store.batch import Batches
from hub.store.enrolments import Enrolments
from hub.store.events import Events
from hub.store.facilities import Facilities
from hub.store.nodes import Nodes
from hub.store.reads import Reads
from hub.store.retention import Retention
from hub.store.upstream import Upstream
from hub.store.visits import Visits
from runtime.db import revision

T = TypeVar("T")


class Store(
    Batches,
    Reads,
    Events,
    Facilities,
    Alerts,
    Nodes,
    Accounts,
    Enrolments,
    Upstream,
    Visits,
    Retention,
):
    """Every part of the store (``hub.store.dialect.Database`` is what the parts need of
    it). Methods are synchronous: an asyncio caller runs them with ``asyncio.to_thread``.
    Methods that record something a person did (``adjust``, ``ack_alert``) also write the
    audit row in the same transaction; other callers record their actions with
    ``audit()``."""

    dialect: str
    several_writers: bool
    configured: Mapping[str, FacilityConfig]
    facilities: Mapping[str, FacilityConfig]

    def _sa(self, what: str, work: Callable[[Connection], T], *, write: bool = True) -> T:
        raise NotImplementedError

    def _lock_facilities(
        self, conn: Connection, facility_ids: Sequence[str]
    ) -> Mapping[str, FacilityConfig]:
        raise NotImplementedError

    def _stream(self, what: str, query: Select[Any]) -> Iterator[Any]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def schema_version(self) -> str | None:
        """The revision of the store's schema (``hub.store.migrations``)."""
        return self._sa("read the schema's revision", revision, write=False)
