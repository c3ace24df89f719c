"""What only the PostgreSQL store has to get right: several processes at one database.

The behaviour both stores share is tested through the registry's API on both (see
``store_kind`` in conftest.py); here are the cases where PostgreSQL can differ from one
SQLite writer: registries migrating together, writers racing on the same visit ids or the
feed, a connection the server dropped, a server that is not there.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import make_conninfo

from pintu.cli import cli
from protocol.status import Status
from registry.errors import Conflict, StoreError
from registry.records import Account, PersonRow, Visit
from registry.storage import HEAD, PgStore

T = TypeVar("T")
SUBJECT = "ab" * 12


@pytest.fixture
def store(pg_dsn: str) -> Iterator[PgStore]:
    opened = PgStore(pg_dsn)
    try:
        yield opened
    finally:
        opened.close()


def together(count: int, work: Callable[[int], T], timeout_s: float = 30.0) -> list[T]:
    """``work(0) .. work(count - 1)`` in threads released at the same moment; their results,
    or the first exception one of them raised."""
    barrier = threading.Barrier(count)
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout_s)
            results[index] = work(index)
        except BaseException as err:  # handed to the test below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    assert not any(t.is_alive() for t in threads), f"not done within {timeout_s} s"
    if errors:
        raise errors[0]
    return [results[i] for i in range(count)]


def visits(count: int, facility_id: str = "f1", offset: int = 0) -> list[Visit]:
    return [
        Visit(facility_id, f"v{i:05d}", f"{i:024x}", "main-in", 1000 + i, 1600 + i)
        for i in range(offset, offset + count)
    ]


def test_registries_starting_together_migrate_once(pg_dsn: str) -> None:
    opened = together(4, lambda _: PgStore(pg_dsn))
    try:
        with psycopg.connect(pg_dsn) as conn:
            versions = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
        assert versions == [HEAD]
        # Each of them works on the one schema.
        for index, store in enumerate(opened):
            store.audit(index, f"op{index}", "test", "t")
        assert [e[1] for e in opened[0].audit_entries()] == ["op0", "op1", "op2", "op3"]
    finally:
        for store in opened:
            store.close()


def test_a_newer_schema_is_refused(store: PgStore, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
    with pytest.raises(StoreError, match=r"revision 0999, newer than.*upgrade"):
        PgStore(pg_dsn)


def test_concurrent_pushes_of_the_same_visits_store_each_once(pg_dsn: str) -> None:
    # Two registry processes (two stores, each with its own connections) take the same
    # batch at once, as when a hub retries a push that timed out while the first still ran.
    stores = [PgStore(pg_dsn), PgStore(pg_dsn)]
    try:
        batch = visits(2_000)
        intakes = together(2, lambda i: stores[i].add_visits("f1", batch, 5_000))
        assert sum(i.stored for i in intakes) == 2_000
        assert sum(i.duplicates for i in intakes) == 2_000
        assert stores[0].count_visits() == 2_000
        # A third push, overlapping, stores only what is new.
        again = stores[1].add_visits("f1", visits(1_000, offset=1_500), 6_000)
        assert (again.stored, again.duplicates) == (500, 500)
        assert stores[0].count_visits() == 2_500
    finally:
        for store in stores:
            store.close()


def test_a_changed_visit_refuses_the_whole_batch(store: PgStore) -> None:
    store.add_visits("f1", visits(3), 5_000)
    changed = visits(5)
    changed[2] = Visit("f1", "v00002", SUBJECT, "main-in", 1000, 1700)
    with pytest.raises(Conflict, match="row 2: visit_id 'v00002'"):
        store.add_visits("f1", changed, 6_000)
    assert store.count_visits() == 3  # v00003 and v00004 were not kept either
    assert store.overlapping("f1", 1000, 1001, "nobody")[0].check_out == 1600


def test_the_feed_never_skips_a_change_while_imports_run_at_once(store: PgStore) -> None:
    # Two imports write the feed while a hub reads it page by page from where it stopped.
    # A cursor that became visible before a smaller one would make the hub skip that one.
    writers_done = threading.Event()
    seen: list[int] = []

    def read_feed() -> None:
        since = 0
        while True:
            done = writers_done.is_set()
            page = store.changes_since(since, 100)
            seen.extend(c.cursor for c in page)
            since = page[-1].cursor if page else since
            if done and not page:
                return

    reader = threading.Thread(target=read_feed)
    reader.start()

    def write(worker: int) -> None:
        for batch in range(20):
            rows = [
                PersonRow(f"{worker:02x}{batch:02x}{i:020x}", "N", Status.GREEN, 2)
                for i in range(50)
            ]
            store.apply_persons(rows, 1_000 + batch)

    try:
        together(3, write)
    finally:
        writers_done.set()
        reader.join(30)
    assert not reader.is_alive()
    assert len(seen) == len(set(seen)) == 3 * 20 * 50
    assert seen == sorted(seen)
    assert store.last_cursor() == max(seen)


def test_the_snapshot_is_one_view_while_statuses_change(store: PgStore) -> None:
    store.apply_persons([PersonRow(f"{i:024x}", "N", Status.GREEN, 2) for i in range(3)], 100)
    cursor, rows = store.status_snapshot()
    # Written after the snapshot began, before it is read: not in it.
    store.apply_persons([PersonRow(f"{0:024x}", "N", Status.RED, 2)], 200)
    store.apply_persons([PersonRow(f"{9:024x}", "N", Status.YELLOW, 1)], 200)
    assert cursor == 3
    assert list(rows) == [(f"{i:024x}", "green", 100) for i in range(3)]
    cursor, rows = store.status_snapshot()
    assert cursor == 5
    assert [r[1] for r in rows] == ["red", "green", "green", "yellow"]


def test_a_connection_the_server_closed_is_replaced(pg_dsn: str) -> None:
    name = f"pintu-test-{uuid.uuid4().hex[:8]}"
    store = PgStore(make_conninfo(pg_dsn, application_name=name))
    try:
        store.add_account(Account("dewi", "hash", "operator", 1))
        assert store.get_account("dewi") is not None  # the pool now holds a connection

        def terminate() -> int:
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (name,),
                ).fetchone()
            return int(killed[0]) if killed else 0

        assert terminate() >= 1
        # A read on the dropped connection is tried again on a new one.
        account = store.get_account("dewi")
        assert account is not None and account.role == "operator"
        assert terminate() >= 1
        # So is a write whose transaction never began; it is stored once.
        store.set_password("dewi", "new-hash")
        account = store.get_account("dewi")
        assert account is not None and account.password_hash == "new-hash"  # noqa: S105
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_server_is_a_clear_store_error(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    dsn = f"host=127.0.0.1 port={port} dbname=registry user=pintu connect_timeout=3"
    with pytest.raises(StoreError, match=f"cannot connect to PostgreSQL at 127.0.0.1:{port}/"):
        PgStore(dsn)
    config = tmp_path / "registry.toml"
    config.write_text(f'[store]\nkind = "postgresql"\ndsn = "{dsn}"\n')
    r = CliRunner().invoke(cli, ["registry", "check-config", "--config", str(config)])
    assert r.exit_code == 0, r.output  # the file is right; the server is another matter
    assert f"store PostgreSQL 127.0.0.1:{port}/registry;" in r.stdout
    password = tmp_path / "password"
    password.write_text("a long enough password\n")
    r = CliRunner().invoke(
        cli,
        [
            *("registry", "add-operator", "--config", str(config), "--username", "dewi"),
            *("--password-file", str(password)),
        ],
    )
    assert r.exit_code == 1
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}/registry" in r.output
    assert "Traceback" not in r.output
