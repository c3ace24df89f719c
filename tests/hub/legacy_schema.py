"""The hub's schema as its stores made it before its migrations were Alembic's: the SQL
of both dialects, kept to make the databases of that time in tests (they must migrate
forward, keeping their rows).

The store's schema as numbered migrations: each one a list of SQL statements.

A database records the number of the last migration applied (SQLite: ``PRAGMA
user_version``; PostgreSQL: the ``schema_version`` table); opening it applies the ones
after, each in its own transaction. Never edit a migration that has shipped: add the next
one. ``MIGRATIONS`` are SQLite's, ``PG_MIGRATIONS`` the same tables in PostgreSQL's types.
A migration that changes how events are counted is followed by a recount (``RECOUNT_AFTER``).
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    # 1: the first schema.
    [
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            facility_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            door_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            ts TEXT NOT NULL,
            kind TEXT NOT NULL,
            direction TEXT,
            subject TEXT,
            signal TEXT,
            admit INTEGER,
            reason TEXT,
            message TEXT,
            detail TEXT,
            late INTEGER NOT NULL DEFAULT 0,
            received_at TEXT NOT NULL,
            delta INTEGER NOT NULL DEFAULT 0,
            flag TEXT
        )""",
        "CREATE INDEX events_facility ON events (facility_id, id)",
        "CREATE INDEX events_door ON events (facility_id, door_id, id)",
        "CREATE INDEX events_subject ON events (subject, ts)",
        """CREATE TABLE occupancy (
            facility_id TEXT NOT NULL,
            zone_id TEXT NOT NULL,
            value INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (facility_id, zone_id)
        )""",
        """CREATE TABLE adjustments (
            id INTEGER PRIMARY KEY,
            facility_id TEXT NOT NULL,
            zone_id TEXT,
            kind TEXT NOT NULL,
            value INTEGER NOT NULL,
            delta INTEGER NOT NULL,
            after_event INTEGER NOT NULL,
            username TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX adjustments_facility ON adjustments (facility_id, id)",
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            facility_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            node_id TEXT,
            door_id TEXT,
            event_id TEXT,
            count INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            last_at TEXT NOT NULL,
            acknowledged_by TEXT,
            acknowledged_at TEXT,
            cleared_at TEXT
        )""",
        "CREATE INDEX alerts_open ON alerts (facility_id, kind, acknowledged_at, cleared_at)",
        """CREATE TABLE nodes (
            facility_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            door_id TEXT,
            state TEXT NOT NULL DEFAULT 'unknown',
            problems TEXT NOT NULL DEFAULT '[]',
            trust_list_age_s REAL,
            status_list_age_s REAL,
            direction TEXT,
            status_ts TEXT,
            state_since TEXT,
            last_seen TEXT,
            last_event_ts TEXT,
            last_seq INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (facility_id, node_id)
        )""",
        """CREATE TABLE gaps (
            id INTEGER PRIMARY KEY,
            facility_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            first_seq INTEGER NOT NULL,
            last_seq INTEGER NOT NULL,
            missing INTEGER NOT NULL,
            detected_at TEXT NOT NULL,
            filled_at TEXT,
            alert_id INTEGER
        )""",
        "CREATE INDEX gaps_node ON gaps (facility_id, node_id, filled_at)",
        """CREATE TABLE occupancy_history (
            facility_id TEXT NOT NULL,
            minute TEXT NOT NULL,
            occupancy INTEGER NOT NULL,
            peak INTEGER NOT NULL,
            PRIMARY KEY (facility_id, minute)
        )""",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            username TEXT NOT NULL,
            action TEXT NOT NULL,
            facility_id TEXT,
            target TEXT,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('viewer', 'guard', 'admin')),
            created_at TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0
        )""",
    ],
    # 2: capacity set by staff at run time; it overrides the config file's until changed.
    [
        """CREATE TABLE capacity_settings (
            facility_id TEXT PRIMARY KEY,
            capacity INTEGER,
            capacity_percent REAL,
            nominal_max INTEGER,
            soft_threshold_percent REAL NOT NULL,
            username TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
    ],
    # 3: the registry sync (the stored trust list, every subject's latest status, the feed
    # cursor) and the visits derived from the events, which are also the registry's outbox.
    [
        """CREATE TABLE registry_sync (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            cursor INTEGER NOT NULL DEFAULT 0,
            statuses_changed_at TEXT,
            statuses_checked_at TEXT,
            trust_body TEXT,
            trust_etag TEXT,
            trust_changed_at TEXT,
            trust_checked_at TEXT
        )""",
        "INSERT INTO registry_sync (id) VALUES (1)",
        # WITHOUT ROWID: one b-tree keyed by subject, so a million upserts touch one tree.
        """CREATE TABLE statuses (
            subject TEXT PRIMARY KEY,
            status INTEGER NOT NULL,
            doses INTEGER NOT NULL,
            changed_at INTEGER NOT NULL,
            cursor INTEGER NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE visits (
            visit_id TEXT PRIMARY KEY,
            facility_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            door_id TEXT NOT NULL,
            check_in TEXT NOT NULL,
            check_out TEXT NOT NULL,
            exit_event_id TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT
        )""",
        "CREATE INDEX visits_outbox ON visits (state, facility_id, created_at)",
        "CREATE INDEX visits_facility ON visits (facility_id, check_in)",
        "CREATE INDEX visits_subject ON visits (subject, check_in)",
        "CREATE INDEX visits_check_out ON visits (check_out)",
    ],
    # 4: sealed node bundles waiting for their node's provisioning QR (hub.enrolments).
    [
        """CREATE TABLE enrolments (
            lookup_id TEXT PRIMARY KEY,
            sealed BLOB,
            expires_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            used_at TEXT
        )""",
    ],
    # 5: counting in the events' own time order (hub.counting.rules). With each event that counts:
    # the facility's count after it, its zones' counts (JSON, NULL without zones), the
    # highest count of its minute up to it, and the alert its flag was counted in. The
    # index finds an event's place in that order; the store then counts every facility
    # again from the start in the new order (``RECOUNT_AFTER``).
    [
        "ALTER TABLE events ADD COLUMN occupancy_after INTEGER",
        "ALTER TABLE events ADD COLUMN zones_after TEXT",
        "ALTER TABLE events ADD COLUMN minute_peak INTEGER",
        "ALTER TABLE events ADD COLUMN alert_id INTEGER",
        "CREATE INDEX events_counting ON events (facility_id, ts, seq, event_id)",
        "CREATE INDEX events_alert ON events (alert_id) WHERE alert_id IS NOT NULL",
        "CREATE INDEX adjustments_made ON adjustments (facility_id, created_at)",
    ],
    # 6: the page language a staff account chose (hub.web.language), NULL for none.
    ["ALTER TABLE users ADD COLUMN language TEXT"],
]

# The same schema for PostgreSQL, migration for migration: number n here is number n above,
# in PostgreSQL's own types (identity columns, timestamptz, boolean, jsonb). A migration
# added above needs its counterpart here; they were compared by the tests.
PG_MIGRATIONS: list[list[str]] = [
    # 1: the first schema, and the rows a writer locks to count a facility's events.
    [
        """CREATE TABLE events (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            facility_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            door_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            ts TIMESTAMPTZ NOT NULL,
            kind TEXT NOT NULL,
            direction TEXT,
            subject TEXT,
            signal TEXT,
            admit BOOLEAN,
            reason TEXT,
            message TEXT,
            detail TEXT,
            late BOOLEAN NOT NULL DEFAULT FALSE,
            received_at TIMESTAMPTZ NOT NULL,
            delta SMALLINT NOT NULL DEFAULT 0,
            flag TEXT
        )""",
        "CREATE INDEX events_facility ON events (facility_id, id)",
        "CREATE INDEX events_door ON events (facility_id, door_id, id)",
        "CREATE INDEX events_subject ON events (subject, ts)",
        """CREATE TABLE occupancy (
            facility_id TEXT NOT NULL,
            zone_id TEXT NOT NULL,
            value INTEGER NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (facility_id, zone_id)
        )""",
        """CREATE TABLE adjustments (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            facility_id TEXT NOT NULL,
            zone_id TEXT,
            kind TEXT NOT NULL,
            value INTEGER NOT NULL,
            delta INTEGER NOT NULL,
            after_event BIGINT NOT NULL,
            username TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            created_at TIMESTAMPTZ NOT NULL
        )""",
        "CREATE INDEX adjustments_facility ON adjustments (facility_id, id)",
        """CREATE TABLE alerts (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            facility_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            node_id TEXT,
            door_id TEXT,
            event_id TEXT,
            count INTEGER NOT NULL DEFAULT 1,
            created_at TIMESTAMPTZ NOT NULL,
            last_at TIMESTAMPTZ NOT NULL,
            acknowledged_by TEXT,
            acknowledged_at TIMESTAMPTZ,
            cleared_at TIMESTAMPTZ
        )""",
        "CREATE INDEX alerts_open ON alerts (facility_id, kind, acknowledged_at, cleared_at)",
        """CREATE TABLE nodes (
            facility_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            door_id TEXT,
            state TEXT NOT NULL DEFAULT 'unknown',
            problems JSONB NOT NULL DEFAULT '[]',
            trust_list_age_s DOUBLE PRECISION,
            status_list_age_s DOUBLE PRECISION,
            direction TEXT,
            status_ts TIMESTAMPTZ,
            state_since TIMESTAMPTZ,
            last_seen TIMESTAMPTZ,
            last_event_ts TIMESTAMPTZ,
            last_seq BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (facility_id, node_id)
        )""",
        """CREATE TABLE gaps (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            facility_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            first_seq BIGINT NOT NULL,
            last_seq BIGINT NOT NULL,
            missing INTEGER NOT NULL,
            detected_at TIMESTAMPTZ NOT NULL,
            filled_at TIMESTAMPTZ,
            alert_id BIGINT
        )""",
        "CREATE INDEX gaps_node ON gaps (facility_id, node_id, filled_at)",
        """CREATE TABLE occupancy_history (
            facility_id TEXT NOT NULL,
            minute TIMESTAMPTZ NOT NULL,
            occupancy INTEGER NOT NULL,
            peak INTEGER NOT NULL,
            PRIMARY KEY (facility_id, minute)
        )""",
        """CREATE TABLE audit (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            ts TIMESTAMPTZ NOT NULL,
            username TEXT NOT NULL,
            action TEXT NOT NULL,
            facility_id TEXT,
            target TEXT,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE users (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('viewer', 'guard', 'admin')),
            created_at TIMESTAMPTZ NOT NULL,
            disabled BOOLEAN NOT NULL DEFAULT FALSE
        )""",
        # One row per facility, locked (SELECT ... FOR UPDATE) by every transaction that
        # counts or changes the facility, so that several hub workers take turns on it.
        "CREATE TABLE facility_locks (facility_id TEXT PRIMARY KEY)",
    ],
    # 2: capacity set by staff at run time; it overrides the config file's until changed.
    [
        """CREATE TABLE capacity_settings (
            facility_id TEXT PRIMARY KEY,
            capacity INTEGER,
            capacity_percent DOUBLE PRECISION,
            nominal_max INTEGER,
            soft_threshold_percent DOUBLE PRECISION NOT NULL,
            username TEXT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        )""",
    ],
    # 3: the registry sync (the stored trust list, every subject's latest status, the feed
    # cursor) and the visits derived from the events, which are also the registry's outbox.
    [
        """CREATE TABLE registry_sync (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            cursor BIGINT NOT NULL DEFAULT 0,
            statuses_changed_at TIMESTAMPTZ,
            statuses_checked_at TIMESTAMPTZ,
            trust_body TEXT,
            trust_etag TEXT,
            trust_changed_at TIMESTAMPTZ,
            trust_checked_at TIMESTAMPTZ
        )""",
        "INSERT INTO registry_sync (id) VALUES (1)",
        """CREATE TABLE statuses (
            subject TEXT PRIMARY KEY,
            status SMALLINT NOT NULL,
            doses SMALLINT NOT NULL,
            changed_at BIGINT NOT NULL,
            cursor BIGINT NOT NULL
        )""",
        """CREATE TABLE visits (
            visit_id TEXT PRIMARY KEY,
            facility_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            door_id TEXT NOT NULL,
            check_in TIMESTAMPTZ NOT NULL,
            check_out TIMESTAMPTZ NOT NULL,
            exit_event_id TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            created_at TIMESTAMPTZ NOT NULL,
            sent_at TIMESTAMPTZ
        )""",
        "CREATE INDEX visits_outbox ON visits (state, facility_id, created_at)",
        "CREATE INDEX visits_facility ON visits (facility_id, check_in)",
        "CREATE INDEX visits_subject ON visits (subject, check_in)",
        "CREATE INDEX visits_check_out ON visits (check_out)",
    ],
    # 4: sealed node bundles waiting for their node's provisioning QR (hub.enrolments).
    [
        """CREATE TABLE enrolments (
            lookup_id TEXT PRIMARY KEY,
            sealed BYTEA,
            expires_at TIMESTAMPTZ NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            used_at TIMESTAMPTZ
        )""",
    ],  # 5: counting in the events' own time order (see migration 5 above).
    [
        "ALTER TABLE events ADD COLUMN occupancy_after INTEGER",
        "ALTER TABLE events ADD COLUMN zones_after TEXT",
        "ALTER TABLE events ADD COLUMN minute_peak INTEGER",
        "ALTER TABLE events ADD COLUMN alert_id BIGINT",
        "CREATE INDEX events_counting ON events (facility_id, ts, seq, event_id)",
        "CREATE INDEX events_alert ON events (alert_id) WHERE alert_id IS NOT NULL",
        "CREATE INDEX adjustments_made ON adjustments (facility_id, created_at)",
    ],
    # 6: the page language a staff account chose (see migration 6 above).
    ["ALTER TABLE users ADD COLUMN language TEXT"],
]

# After these migrations the store counts every facility again from its stored events
# (``rebuild_occupancy``, in the same transaction): what a migration changed in how
# counting works then holds for the events stored before it too.
RECOUNT_AFTER = frozenset({5})
