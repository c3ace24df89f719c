"""Before and after an optimisation: the product code of an earlier commit against this
checkout's, measured by this checkout's benchmarks in the same run.

    python -m bench.compare --before 29a166a feed               # the registry's status feed
    python -m bench.compare --before 29a166a run service_memory --seconds 30

The earlier commit's packages are exported (``git archive``) into a temporary folder and
this checkout's ``bench/`` is laid over them, so both sides run the same benchmark code.

- ``feed``: one registry store is seeded, copied, and served by two ``pintu registry
  serve`` processes at once, one running the earlier code and one this checkout's. A client
  reads the whole feed from both, page by page and alternating which goes first, so a busy
  moment of a shared machine falls on both sides alike; every page must be byte for byte the
  same from both. The time of each request, body read in full, is summed per side.
- ``api``: two ``pintu hub serve`` processes, the earlier code's and this checkout's, each
  with its own broker and store and an admin logged in; the requests of
  ``bench.api_latency`` (a static file as the baseline, then the API's routes) go to both
  in turn, alternating which side goes first, and each is timed to its body read in full.
- ``run NAME ARGS``: ``python -m bench.NAME ARGS`` over the earlier code, then over this
  checkout's, one after the other (for figures a busy machine does not sway, as memory).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.registry import ROOT, free_port, hub_token, make_config, seed_statuses
from registry.service import Registry


@contextlib.contextmanager
def earlier_tree(revision: str) -> Iterator[Path]:
    """The product code at ``revision`` with this checkout's ``bench/`` over it."""
    with tempfile.TemporaryDirectory(prefix="pintu-before-") as tmp:
        tree = Path(tmp)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", revision],  # noqa: S607
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        shutil.rmtree(tree / "bench")
        shutil.copytree(
            ROOT / "bench", tree / "bench", ignore=shutil.ignore_patterns("__pycache__")
        )
        yield tree


def _env(tree: Path) -> dict[str, str]:
    # The tree first on the path: its packages win over the checkout's editable install.
    return {**os.environ, "PYTHONPATH": str(tree)}


class Served:
    """``pintu registry serve`` from ``tree`` on its own copy of the store."""

    def __init__(self, tree: Path, config_path: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pintu", "registry", "serve", "--config", str(config_path)],
            cwd=tree,
            env=_env(tree),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=self.url, timeout=5) as http:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the registry from {tree} exited")
                try:
                    http.get("/api/v1/health")
                    return
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the registry did not start") from None
                    time.sleep(0.05)  # waiting for "it answers", with a deadline

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass(frozen=True)
class FeedFigures:
    changes: int
    pages: int
    before_s: list[float]  # one whole-feed read a round
    after_s: list[float]


def compare_feed(
    revision: str, changes: int, page_size: int, rounds: int, seed: int
) -> FeedFigures:
    with contextlib.ExitStack() as stack:
        tree = stack.enter_context(earlier_tree(revision))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pintu-bench-")))
        ports = {"before": free_port(), "after": free_port()}
        (work / "before").mkdir()
        # Seeded by the earlier code, so that a store whose format changed since is met by
        # this checkout as an existing database is (migrated when it opens).
        token = subprocess.run(
            [
                *(sys.executable, "-m", "bench.compare", "--before", revision, "seed"),
                *(str(work / "before"), str(ports["before"]), str(changes), str(seed)),
            ],
            cwd=tree,
            env=_env(tree),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        shutil.copytree(work / "before", work / "after")
        _, after_config = make_config(work / "after", ports["after"])
        servers = {
            "before": Served(tree, work / "before" / "registry.toml", ports["before"]),
            "after": Served(ROOT, after_config, ports["after"]),
        }
        for server in servers.values():
            stack.callback(server.stop)
        headers = {"Authorization": f"Bearer {token}"}
        clients = {
            side: stack.enter_context(httpx.Client(base_url=s.url, timeout=120, headers=headers))
            for side, s in servers.items()
        }
        for http in clients.values():  # warm-up: a connection and the first request's costs
            http.get("/api/v1/statuses", params={"limit": 1}).raise_for_status()
        totals: dict[str, list[float]] = {"before": [], "after": []}
        pages = 0
        for round_ in range(rounds):
            spent = {"before": 0.0, "after": 0.0}
            since, pages = 0, 0
            while True:
                order = ["before", "after"] if (pages + round_) % 2 == 0 else ["after", "before"]
                bodies = {}
                for side in order:
                    started = time.perf_counter()
                    r = clients[side].get(
                        "/api/v1/statuses", params={"since": since, "limit": page_size}
                    )
                    r.raise_for_status()
                    bodies[side] = r.content
                    spent[side] += time.perf_counter() - started
                if bodies["before"] != bodies["after"]:
                    raise RuntimeError(f"the two registries' pages after cursor {since} differ")
                page = httpx.Response(200, content=bodies["after"]).json()
                pages += 1
                since = page["next"]
                if not page["more"]:
                    break
            for side, seconds in spent.items():
                totals[side].append(seconds)
    return FeedFigures(changes, pages, totals["before"], totals["after"])


def feed_report(figures: FeedFigures, revision: str, command: str) -> str:
    before = statistics.median(figures.before_s)
    after = statistics.median(figures.after_s)
    per = figures.changes / 1000
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            f"{figures.changes:,} changes, {figures.pages} pages a read, "
            f"{len(figures.before_s)} reads from each side; every page the same bytes from both.",
            "",
            "| code | whole feed, median | per 1,000 changes | range over the reads |",
            "| --- | ---: | ---: | ---: |",
            f"| before ({revision}) | {before:.2f} s | {1000 * before / per:.1f} ms "
            f"| {min(figures.before_s):.2f} to {max(figures.before_s):.2f} s |",
            f"| after (this checkout) | {after:.2f} s | {1000 * after / per:.1f} ms "
            f"| {min(figures.after_s):.2f} to {max(figures.after_s):.2f} s |",
            "",
            f"After / before: {after / before:.2f}x "
            f"(the feed served {before / after:.2f}x as fast).",
        ]
    )


class ServedHub:
    """``pintu hub serve`` from ``tree`` with its own broker and store, an admin logged in."""

    def __init__(self, tree: Path, work: Path, stack: contextlib.ExitStack) -> None:
        from bench.api_latency import FACILITY, PASSWORD
        from provisioning.mosquitto import Mosquitto

        work.mkdir()
        broker = stack.enter_context(Mosquitto(work / "broker"))
        port = free_port()
        config = work / "hub.toml"
        config.write_text(
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "bench-hub"\n\n'
            f'[store]\nbackend = "sqlite"\npath = "{work / "hub.db"}"\n\n'
            f'[web]\nport = {port}\nsecret_key_file = "{work / "web-secret"}"\n\n'
            "[homeassistant]\nenabled = false\n\n"
            f'[[facilities]]\nid = "{FACILITY}"\nname = "Benchmark"\ncapacity = 1000\n',
            encoding="utf-8",
        )
        (work / "password").write_text(PASSWORD, encoding="utf-8")
        pintu = [sys.executable, "-m", "pintu"]
        subprocess.run(
            [*pintu, "hub", "add-user", "--config", str(config), "--username", "admin",
             "--role", "admin", "--password-file", str(work / "password")],
            cwd=tree, env=_env(tree), check=True, capture_output=True,
        )  # fmt: skip
        self.process = subprocess.Popen(
            [*pintu, "hub", "serve", "--config", str(config)],
            cwd=tree,
            env=_env(tree),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(self.stop)
        self.client = stack.enter_context(
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the hub from {tree} exited")
            try:
                token = self.client.get("/api/v1/session").json()["csrf_token"]
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the hub did not start") from None
                time.sleep(0.05)  # waiting for "it answers", with a deadline
        answer = self.client.post(
            "/api/v1/session",
            json={"username": "admin", "password": PASSWORD},
            headers={"X-CSRF-Token": token},
        )
        answer.raise_for_status()
        self.token: str = answer.json()["csrf_token"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def compare_api(revision: str, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Each request's times (ms) from both sides, rows in the order of bench.api_latency."""
    from bench.api_latency import WARMUP, rows

    with contextlib.ExitStack() as stack:
        tree = stack.enter_context(earlier_tree(revision))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pintu-bench-")))
        hubs = {
            "before": ServedHub(tree, work / "before", stack),
            "after": ServedHub(ROOT, work / "after", stack),
        }
        tables = {side: rows(hub.client, hub.token) for side, hub in hubs.items()}
        names = [name for name, _ in tables["after"]]
        times: dict[str, dict[str, list[float]]] = {
            side: {name: [] for name in names} for side in hubs
        }
        for round_ in range(WARMUP + rounds):
            for index, name in enumerate(names):
                order = ["before", "after"] if (round_ + index) % 2 == 0 else ["after", "before"]
                for side in order:
                    send = tables[side][index][1]
                    started = time.perf_counter()
                    response = send()
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code >= 500:
                        raise RuntimeError(f"{side} {name}: {response.status_code}")
                    if round_ >= WARMUP:
                        times[side][name].append(elapsed)
    return times


def api_report(times: dict[str, dict[str, list[float]]], revision: str, command: str) -> str:
    from bench.api_latency import pct

    lines = [
        f"Command: `{command}`",
        "",
        f"{len(next(iter(times['after'].values())))} requests a row from each side, the two "
        "sides in turn. Times in ms, to the body read in full.",
        "",
        f"| request | before ({revision}) p50 | after p50 | before p95 | after p95 "
        "| after / before (p50) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, before in times["before"].items():
        after = times["after"][name]
        b50, a50 = statistics.median(before), statistics.median(after)
        lines.append(
            f"| {name} | {b50:.2f} | {a50:.2f} | {pct(before, 95):.2f} | {pct(after, 95):.2f} "
            f"| {a50 / b50:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--before", required=True, help="the earlier commit (any git revision)")
    sub = parser.add_subparsers(dest="what", required=True)
    feed = sub.add_parser("feed", help="the registry's status feed, both sides interleaved")
    feed.add_argument("--changes", type=int, default=200_000, help="status changes (200000)")
    feed.add_argument("--page-size", type=int, default=10_000, help="feed page size (10000)")
    feed.add_argument("--rounds", type=int, default=5, help="whole-feed reads a side (5)")
    feed.add_argument("--seed", type=int, default=2021, help="random seed")
    api = sub.add_parser("api", help="the hub's API latency, both sides interleaved")
    api.add_argument("--rounds", type=int, default=300, help="requests a row a side (300)")
    seeding = sub.add_parser("seed", help="(used by feed) seed a store with this tree's code")
    seeding.add_argument("directory", type=Path)
    seeding.add_argument("port", type=int)
    seeding.add_argument("changes", type=int)
    seeding.add_argument("seed", type=int)
    run = sub.add_parser("run", help="a benchmark over the earlier code, then this checkout's")
    run.add_argument("name", help="the benchmark module in bench/, e.g. service_memory")
    run.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    args = parser.parse_args(argv)

    if args.what == "seed":
        config, _ = make_config(args.directory, args.port)
        registry = Registry.open(config)
        try:
            token, _ = hub_token(registry)
            seed_statuses(registry, args.changes, random.Random(args.seed))
        finally:
            registry.close()
        print(token)
        return 0
    if args.what == "feed":
        if args.changes < 1 or args.page_size < 1 or args.rounds < 1:
            parser.error("--changes, --page-size and --rounds must be positive")
        figures = compare_feed(args.before, args.changes, args.page_size, args.rounds, args.seed)
        shown = f"python -m bench.compare --before {args.before} feed"
        if args.changes != 200_000:
            shown += f" --changes {args.changes}"
        if args.rounds != 5:
            shown += f" --rounds {args.rounds}"
        print(feed_report(figures, args.before, shown))
        return 0
    if args.what == "api":
        if args.rounds < 1:
            parser.error("--rounds must be positive")
        shown = f"python -m bench.compare --before {args.before} api"
        if args.rounds != 300:
            shown += f" --rounds {args.rounds}"
        print(api_report(compare_api(args.before, args.rounds), args.before, shown))
        return 0
    with earlier_tree(args.before) as tree:
        command = [sys.executable, "-m", f"bench.{args.name}", *args.args]
        for label, where in ((f"before ({args.before})", tree), ("after (this checkout)", ROOT)):
            print(f"--- {label}", flush=True)
            done = subprocess.run(command, cwd=where, env=_env(where), check=False)
            if done.returncode != 0:
                return done.returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
