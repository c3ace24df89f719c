"""The store's schema as numbered migrations: each one a list of SQL statements.

A database records the number of the last migration applied (SQLite: ``PRAGMA
user_version``); opening it applies the ones after, each in its own transaction. Never edit
a migration that has shipped: add the next one. The statements stick to SQL that a
PostgreSQL backend can take with few changes (``INTEGER PRIMARY KEY`` becomes an identity
column there).
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
]
