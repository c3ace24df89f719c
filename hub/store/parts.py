"""The store's parts, one per concern, that each database's store is made of
(``hub.store.sqlite.SqliteStore``, ``hub.store.postgres.PgStore``)."""

from __future__ import annotations

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


class StoreParts(
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
    """Every part of the store; a database's store adds how it connects and writes."""
