"""Every table the registry keeps, defined once for SQLite and PostgreSQL.

Times are whole Unix seconds: ``BIGINT`` on PostgreSQL, ``INTEGER`` on SQLite (where the
two are one type, and only ``INTEGER`` makes a primary key the rowid). A change here is
made by a new revision in ``registry/migrations/versions`` (see docs/registry.md,
"Storage"); ``tests/registry/test_migrations.py`` checks that the migrations build exactly
these tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)

# Unix seconds, and the counters that grow with the feed and the audit trail.
Seconds = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

persons = Table(
    "persons",
    metadata,
    Column("subject", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("doses", Integer, nullable=False),
    Column("changed_at", Seconds, nullable=False),
    Column("created_at", Seconds, nullable=False),
)

# The status feed. A cursor is never reused (AUTOINCREMENT on SQLite), and PostgreSQL hands
# them out without a sequence cache, so they come in order whichever connection asks.
status_changes = Table(
    "status_changes",
    metadata,
    Column("cursor", Seconds, Identity(always=True, cache=1), primary_key=True),
    Column("subject", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("doses", Integer, nullable=False),
    Column("changed_at", Seconds, nullable=False),
    sqlite_autoincrement=True,
)

accounts = Table(
    "accounts",
    metadata,
    Column("username", Text, primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("created_at", Seconds, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("username", Text),
    Column("facility_id", Text),
    Column("created_at", Seconds, nullable=False),
    Column("expires_at", Seconds),
    Index("tokens_facility", "facility_id", "kind"),
    # The purge of expired tokens.
    Index("tokens_expires_at", "expires_at"),
)

facilities = Table(
    "facilities",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("address", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("pic_name", Text, nullable=False),
    Column("pic_email", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("reason", Text),
    Column("activation_hash", Text),
    Column("activation_expires_at", Seconds),
    Column("created_at", Seconds, nullable=False),
    Column("updated_at", Seconds, nullable=False),
    Index("facilities_state", "state"),
    # A PIC's own facilities.
    Index("facilities_pic_email", "pic_email"),
)

doors = Table(
    "doors",
    metadata,
    Column("facility_id", Text, ForeignKey("facilities.id"), nullable=False),
    Column("door_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("direction", Text, nullable=False),
    Column("created_at", Seconds, nullable=False),
    # camera (a door node scans passes) or poster (phones scan the door's poster).
    Column("kind", Text, nullable=False, server_default="camera"),
    PrimaryKeyConstraint("facility_id", "door_id"),
)

visits = Table(
    "visits",
    metadata,
    Column("facility_id", Text, nullable=False),
    Column("visit_id", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("door_id", Text, nullable=False),
    Column("check_in", Seconds, nullable=False),
    Column("check_out", Seconds, nullable=False),
    Column("received_at", Seconds, nullable=False),
    PrimaryKeyConstraint("facility_id", "visit_id"),
    # Tracing: a subject's own visits, then who else was at each facility meanwhile.
    Index("visits_subject_time", "subject", "check_in"),
    Index("visits_facility_time", "facility_id", "check_in"),
    # Retention: the purge deletes by end time.
    Index("visits_check_out", "check_out"),
)

# The longest visit stored per facility bounds the overlap scan from below.
visit_bounds = Table(
    "visit_bounds",
    metadata,
    Column("facility_id", Text, primary_key=True),
    Column("max_length", Seconds, nullable=False),
)

# What the registry saw of each facility's hub: when it last read the status feed and the
# trust list and pushed visits, and its refused pushes. Written at most once a minute a
# kind by each registry process (``Registry.note_hub``), refusals every time.
hub_activity = Table(
    "hub_activity",
    metadata,
    Column("facility_id", Text, primary_key=True),
    Column("statuses_at", Seconds),
    Column("trust_at", Seconds),
    Column("visits_at", Seconds),
    Column("refused_at", Seconds),
    Column("refused", Integer, nullable=False, server_default="0"),
    Column("refused_reason", Text),
    # When the hub last asked for phone check-ins (its channel, docs/protocol.md).
    Column("channel_at", Seconds),
)

# One-time wallet links (``pintu registry issue-pass --link``), by their token's hash.
wallet_links = Table(
    "wallet_links",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("subject", Text, nullable=False),
    Column("created_at", Seconds, nullable=False),
    Column("expires_at", Seconds, nullable=False),
    Column("used_at", Seconds),
    Index("wallet_links_expires_at", "expires_at"),
)

# The phones' wallets, by their credential's hash, with the pass each holds; a person's
# older wallets are retired when a new link is used.
wallets = Table(
    "wallets",
    metadata,
    Column("credential_hash", Text, primary_key=True),
    Column("subject", Text, nullable=False),
    Column("created_at", Seconds, nullable=False),
    Column("retired_at", Seconds),
    Column("pass_text", Text, nullable=False),
    Column("pass_status", Text, nullable=False),
    Column("pass_doses", Integer, nullable=False),
    Column("pass_kid", Text, nullable=False),
    Column("pass_issued_at", Seconds, nullable=False),
    Column("pass_expires_at", Seconds, nullable=False),
    Index("wallets_subject", "subject"),
)

# Phone check-ins on their way to a facility's hub, over the channel the hub keeps open
# (``registry.checkins``). A row lives until its answer has reached the phone, or a few
# minutes after the hub answered; one the hub never took lives until the tracing window
# ends. ``id`` is the wallet's own id for the check-in, so a retry is the same row.
checkins = Table(
    "checkins",
    metadata,
    Column("id", Text, primary_key=True),
    Column("wallet_hash", Text, nullable=False),
    Column("facility_id", Text, nullable=False),
    Column("door_id", Text, nullable=False),
    Column("pass_text", Text, nullable=False),
    # When the phone opened the door's address, in Unix milliseconds.
    Column("at_ms", Seconds, nullable=False),
    # Whether the phone was answered for the hub (it could not be reached in time).
    Column("queued", Integer, nullable=False, server_default="0"),
    Column("leased_until_ms", Seconds),
    Column("answer", Text),
    Column("answered_at", Seconds),
    Index("checkins_facility", "facility_id", "at_ms"),
    Index("checkins_wallet", "wallet_hash"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Seconds, Identity(always=True), primary_key=True),
    Column("at", Seconds, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("detail", Text, nullable=False),
    sqlite_autoincrement=True,
)
