"""Hub sync benchmark: a fresh hub syncs a million status changes from a real registry.

    python -m bench.sync                     # print the table
    python -m bench.sync --write             # ... and put it into docs/benchmarks.md
    python -m bench.sync --changes 100000    # quicker

A registry store gets the changes (one per person, through the same batched path as a CSV
import: ``bench.registry.seed_statuses``), then ``pintu registry serve`` runs in its own
process, as in production. In the same run:

1. the baseline: one plain SQL ``SELECT`` of the whole feed from the registry's file;
2. the feed read over HTTP and parsed and checked by the hub's client, stored nowhere;
3. the hub's sync (``hub.upstream.sync.RegistrySync``) into a fresh SQLite store: every page read,
   checked and upserted with its cursor in one transaction, the next page fetched while
   the previous one is written;
4. the doors' lists: the registry builds the status list from every person's latest
   status and signs it and the trust list with its list key; the hub fetches them, checks
   them as a door would and publishes them unchanged, before it reads the feed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.registry import (
    ROOT,
    Server,
    db_path,
    free_port,
    hub_token,
    machine,
    make_config,
    read_feed_sql,
    seed_statuses,
    verdict,
    write_section,
)
from hub.metrics import HubMetrics
from hub.store.sqlite import SqliteStore
from hub.upstream.client import HttpRegistryClient
from hub.upstream.sync import ListPublisher, RegistrySync, SyncMetrics
from protocol.statuslist import MAX_LIST_BYTES
from registry.service import Registry

START = "<!-- bench:sync:start -->"
END = "<!-- bench:sync:end -->"
HEADING = "## Hub sync"
TARGET_S = 60.0


@dataclass(frozen=True)
class Figures:
    changes: int
    page_size: int
    load_s: float
    sql_s: float
    read_s: float
    read_bytes: int
    sync_s: float
    pages: int
    list_s: float
    list_bytes: int
    db_bytes: int


class _Sink:
    """Where the sync publishes the doors' lists: counts the bytes, sends nothing."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}

    def __call__(self, topic: str, payload: bytes, *, retain: bool) -> None:
        self.sizes[topic.rsplit("/", 1)[-1]] = len(payload)


async def read_only(url: str, token: str, page_size: int) -> tuple[float, int, int]:
    """The feed through the hub's client (HTTP, JSON, every entry checked), stored nowhere."""
    client = HttpRegistryClient(url, {"bench": token}, sync_timeout_s=120)
    try:
        await client.statuses(0, 1)  # warm-up: a connection and the first request's costs
        started = time.perf_counter()
        since, total, received = 0, 0, 0
        while True:
            page = await client.statuses(since, page_size)
            total += len(page.changes)
            received += page.size
            since = page.next
            if not page.more:
                break
        return time.perf_counter() - started, total, received
    finally:
        await client.aclose()


async def hub_sync(
    url: str, token: str, page_size: int, store: SqliteStore
) -> tuple[float, int, int, float, int]:
    client = HttpRegistryClient(url, {"bench": token}, sync_timeout_s=120)
    sink = _Sink()
    metrics = SyncMetrics(HubMetrics())
    publisher = ListPublisher(sink, ["bench"], metrics=metrics)
    sync = RegistrySync(store, client, publisher, metrics=metrics, page_size=page_size)
    try:
        await client.statuses(0, 1)  # the same warm-up as the read-only pass
        result = await sync.sync_now()
        # The list as the registry serves it, published or (over the limit) not.
        served = (await client.door_list("status", None)).body or b""
    finally:
        await client.aclose()
    if not result.ok:
        raise RuntimeError(f"the sync failed: {result.error}")
    feed_s = result.seconds - result.publish_seconds
    return feed_s, result.statuses, result.pages, result.publish_seconds, len(served)


def measure(changes: int, page_size: int, seed: int) -> Figures:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="pintu-bench-sync-") as tmp:
        port = free_port()
        config, config_path = make_config(Path(tmp), port)
        registry = Registry.open(config)
        try:
            token, _ = hub_token(registry)
            load_s = seed_statuses(registry, changes, rng)
        finally:
            registry.close()
        sql_s = read_feed_sql(db_path(config), changes)
        server = Server(config_path, port)
        try:
            read_s, read_total, read_bytes = asyncio.run(read_only(server.url, token, page_size))
            hub_path = Path(tmp) / "hub" / "hub.db"
            with SqliteStore(hub_path) as store:
                sync_s, stored, pages, list_s, list_bytes = asyncio.run(
                    hub_sync(server.url, token, page_size, store)
                )
                in_store = store.sync_state().statuses
        finally:
            server.stop()
        if read_total != changes or stored != changes or in_store != changes:
            raise RuntimeError(
                f"expected {changes} changes; read {read_total}, synced {stored}, "
                f"{in_store} subjects in the store"
            )
        db_bytes = sum(p.stat().st_size for p in hub_path.parent.iterdir() if p.is_file())
    return Figures(
        changes,
        page_size,
        load_s,
        sql_s,
        read_s,
        read_bytes,
        sync_s,
        pages,
        list_s,
        list_bytes,
        db_bytes,
    )


def report(f: Figures, command: str) -> str:
    per_million = f.sync_s * 1_000_000 / f.changes

    def row(what: str, seconds: float, extra: str = "-") -> str:
        return (
            f"| {what} | {f.changes:,} | {seconds:.2f} s | {f.changes / seconds:,.0f} | {extra} |"
        )

    return "\n".join(
        [
            machine(),
            "",
            f"Command: `{command}`",
            "",
            f"{f.changes:,} status changes (one per person) were written into a registry "
            f"through its batched import path ({f.load_s:.1f} s); `pintu registry serve` then "
            "ran in its own process. A fresh hub synced them into a new SQLite store: "
            f"`GET /api/v1/statuses` page by page ({f.page_size:,} a page, {f.pages} pages), "
            "each page parsed and checked, upserted into the statuses table with its cursor "
            "in one transaction, the next page fetched while the last was written. The other "
            "rows come from the same run: the plain SQL read of the same feed at the "
            "registry, and the feed read by the hub's client without storing it.",
            "",
            "| step | changes | time | changes/s | notes |",
            "| --- | ---: | ---: | ---: | --- |",
            row("registry: plain SQL `SELECT` of the feed (baseline)", f.sql_s),
            row(
                "hub: feed over HTTP, parsed and checked, not stored",
                f.read_s,
                f"{f.read_bytes / 1e6:,.1f} MB of JSON",
            ),
            row(
                "**hub: sync into SQLite (read, check, upsert, cursor)**",
                f.sync_s,
                f"store {f.db_bytes / 1e6:,.1f} MB",
            ),
            row(
                "hub: the doors' lists, built and signed by the registry, checked and published",
                f.list_s,
                f"{f.list_bytes / 1e6:,.1f} MB signed `.psl`, "
                + (
                    "published retained"
                    if f.list_bytes <= MAX_LIST_BYTES
                    else f"over the {MAX_LIST_BYTES / 1e6:.1f} MB a message may carry: not "
                    "published"
                ),
            ),
            "",
            f"The sync costs {f.sync_s / f.sql_s:.1f}x the registry's bare SELECT and "
            f"{f.sync_s / f.read_s:.2f}x reading the feed without storing it. Target: "
            f"1,000,000 changes in under {TARGET_S:g} s; at this rate they take "
            f"{per_million:.1f} s ({verdict(per_million < TARGET_S)}). The doors' lists come "
            "first: the registry builds the status list out of its own store and signs it, the "
            "hub checks the signature and publishes it unchanged.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--changes", type=int, default=1_000_000, help="status changes")
    parser.add_argument("--page-size", type=int, default=10_000, help="feed page size")
    parser.add_argument("--seed", type=int, default=2021, help="random seed")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "benchmarks.md", help="file for --write"
    )
    parser.add_argument("--write", action="store_true", help="update the sync section of --out")
    args = parser.parse_args(argv)
    if args.changes < 1 or not 1 <= args.page_size <= 10_000:
        parser.error("--changes must be at least 1, --page-size 1 to 10000")
    logging.getLogger("registry").setLevel(logging.ERROR)
    shown = ["python -m bench.sync"]
    if args.changes != 1_000_000:
        shown.append(f"--changes {args.changes}")
    if args.page_size != 10_000:
        shown.append(f"--page-size {args.page_size}")
    if args.seed != 2021:
        shown.append(f"--seed {args.seed}")
    print(f"{args.changes:,} status changes: seeding, then syncing ...", flush=True)
    figures = measure(args.changes, args.page_size, args.seed)
    section = report(figures, " ".join(shown))
    print()
    print(section)
    if args.write:
        write_section(args.out, section, START, END, HEADING)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
