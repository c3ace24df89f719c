"""Soak: several doors at a turnstile's peak for half an hour, with faults at random times.

    python -m bench.soak                     # 30 minutes, print the figures
    python -m bench.soak --minutes 1         # a smoke run
    python -m bench.soak --write             # ... and put them into docs/reliability.md
    SOAK_MINUTES=30 make soak                # the same through make

A whole facility runs as real processes (:mod:`bench.fleet`): a private Mosquitto, ``pintu
hub serve`` and one ``pintu node run`` per door, each door deciding about once a second (a
turnstile admits about one person a second). Faults come at random times from a seeded
RNG: the broker killed with SIGKILL and restarted, the hub killed mid-batch and restarted,
a node killed mid-stream and restarted, a node's link cut for minutes, a link left
half-open. Every minute the resident memory and open file descriptors of each process and
the size of each journal are sampled. At the end the doors are stopped, their journals
drained, and the invariants checked: every event stored exactly once, occupancy = entries
- exits, every journal intact, no relay pulse without a decision.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from bench.fleet import Fleet, Proc, Tally, check, doors
from bench.latency import machine

logger = logging.getLogger(__name__)

START = "<!-- reliability:soak:start -->"
END = "<!-- reliability:soak:end -->"
HEADING = "## Soak"
DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
FAULTS = ("broker_kill", "hub_kill", "node_kill", "link_cut", "link_half_open")


@dataclass
class Sample:
    minute: float
    rss_mb: dict[str, float]
    fds: dict[str, int]
    journal_kb: dict[str, float]
    pending: dict[str, int]  # events in the journal the hub has not acked yet


@dataclass
class Soak:
    minutes: float
    seed: int
    doors: int
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[str] = field(default_factory=list)
    decided_while_cut: int = 0
    samples: list[Sample] = field(default_factory=list)
    tally: Tally | None = None


def _sample(fleet: Fleet, started: float) -> Sample:
    rss: dict[str, float] = {}
    fds: dict[str, int] = {}
    procs: list[Proc] = [fleet.hub, *fleet.nodes.values()]
    for proc in procs:
        pid = proc.pid
        if pid is None:
            continue
        try:
            p = psutil.Process(pid)
            rss[proc.name] = p.memory_info().rss / 1e6
            fds[proc.name] = p.num_fds()
        except psutil.Error:
            continue
    journal = {node_id: fleet.journal_bytes(node_id) / 1e3 for node_id in fleet.nodes}
    pending: dict[str, int] = {}
    for node_id in fleet.nodes:
        try:
            pending[node_id] = len(fleet.journal_state(node_id)[1])
        except sqlite3.Error as err:  # a node being restarted; the next sample has it
            logger.info("soak: %s journal not read: %s", node_id, err)
    return Sample((time.monotonic() - started) / 60, rss, fds, journal, pending)


class FaultPlan:
    """Faults one after another at random times, each healed before the next."""

    def __init__(self, fleet: Fleet, soak: Soak, rng: random.Random, long: bool) -> None:
        self.fleet = fleet
        self.soak = soak
        self.rng = rng
        # A long soak cuts links for minutes; a smoke run for seconds.
        self.cut_s = (60.0, 180.0) if long else (5.0, 15.0)
        self.gap_s = (20.0, 60.0) if long else (5.0, 15.0)
        self.pause = threading.Event()
        self._bag: list[str] = []

    def next_fault(self) -> str:
        """Every kind of fault once per round, in a random order: none is left out by luck."""
        if not self._bag:
            self._bag = list(FAULTS)
            self.rng.shuffle(self._bag)
        return self._bag.pop()

    def wait(self, seconds: float, until: float) -> bool:
        """Let the fleet run ``seconds`` (an outage or a gap); False once the soak is over."""
        end = min(time.monotonic() + seconds, until)
        while time.monotonic() < end:
            self.fleet.check_alive()
            self.pause.wait(min(1.0, max(0.0, end - time.monotonic())))
        return time.monotonic() < until

    def run(self, started: float, until: float) -> None:
        rng = self.rng
        while self.wait(rng.uniform(*self.gap_s), until):
            fault = self.next_fault()
            node_id = rng.choice(sorted(self.fleet.nodes))
            self.soak.faults[fault] += 1
            at = f"{(time.monotonic() - started) / 60:4.1f} min"
            if fault == "broker_kill":
                down = rng.uniform(1.0, 10.0)
                self.soak.fault_log.append(f"{at}: broker SIGKILL, down {down:.0f} s")
                self.fleet.restart_broker(down)
            elif fault == "hub_kill":
                down = rng.uniform(1.0, 10.0)
                self.soak.fault_log.append(f"{at}: hub SIGKILL, down {down:.0f} s")
                self.fleet.kill_hub()
                self.wait(down, float("inf"))
                self.fleet.start_hub()
            elif fault == "node_kill":
                down = rng.uniform(0.5, 5.0)
                self.soak.fault_log.append(f"{at}: {node_id} SIGKILL, down {down:.0f} s")
                self.fleet.kill_node(node_id)
                self.wait(down, float("inf"))
                self.fleet.start_node(node_id)
            else:
                length = rng.uniform(*self.cut_s)
                link = self.fleet.links[node_id]
                how = "cut" if fault == "link_cut" else "half-open"
                self.soak.fault_log.append(f"{at}: {node_id} link {how} for {length:.0f} s")
                before, _, _ = self.fleet.journal_state(node_id)
                if fault == "link_cut":
                    link.cut()
                else:
                    link.stall()
                self.wait(length, float("inf"))
                after, _, _ = self.fleet.journal_state(node_id)
                self.soak.decided_while_cut += after - before
                link.restore()


def run(minutes: float, seed: int, entries: int, exits: int, workdir: Path) -> Soak:
    soak = Soak(minutes=minutes, seed=seed, doors=entries + exits)
    fleet = Fleet(workdir, specs=doors(entries, exits), rate_per_s=1.0, fps=4.0, seed=seed)
    rng = random.Random(seed)
    plan = FaultPlan(fleet, soak, rng, long=minutes >= 10)
    fleet.start()
    try:
        started = time.monotonic()
        until = started + minutes * 60
        next_sample = started

        def tick() -> None:
            nonlocal next_sample
            if time.monotonic() >= next_sample:
                soak.samples.append(_sample(fleet, started))
                minute = soak.samples[-1].minute
                logger.info("soak: minute %.1f, %d events stored", minute, len(fleet.stored()))
                next_sample += 60.0

        sampler_stop = threading.Event()

        def sampler() -> None:
            while not sampler_stop.wait(1.0):
                tick()

        thread = threading.Thread(target=sampler, name="soak-sampler", daemon=True)
        tick()
        thread.start()
        try:
            plan.run(started, until)
        finally:
            sampler_stop.set()
            thread.join(5)
        tick()
        fleet.settle(timeout_s=300)
        soak.tally = check(fleet)
    finally:
        fleet.close()
    return soak


# -- the report ------------------------------------------------------------------------


def _series(samples: Sequence[Sample], what: str, name: str) -> list[float]:
    series: list[dict[str, float]] = [getattr(s, what) for s in samples if s.minute >= 1]
    return [float(values[name]) for values in series if name in values]


def _spread(samples: Sequence[Sample], what: str, name: str) -> tuple[float, float, float]:
    """(first, last, max) of one series over the samples after the first minute."""
    values = _series(samples, what, name)
    if not values:
        return (0.0, 0.0, 0.0)
    return (values[0], values[-1], max(values))


def report(soak: Soak, command: str) -> str:
    tally = soak.tally
    assert tally is not None
    names = sorted({n for s in soak.samples for n in s.rss_mb})
    verdict = "pass" if tally.ok else "FAIL: " + "; ".join(tally.problems)
    lines = [
        HEADING,
        "",
        START,
        f"Produced by `{command}`: {soak.minutes:g} minutes, seed {soak.seed}, {soak.doors} "
        f"doors at about one decision a second each. {machine()}",
        "",
        "| fault | times |",
        "| --- | ---: |",
        *(f"| {f.replace('_', ' ')} | {soak.faults[f]} |" for f in FAULTS),
        "",
        "| events sent | stored | duplicated | lost | resent late | relay pulses | released events "
        "| pulses without a decision | occupancy (hub) | entries - exits | journals intact |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| {tally.sent} | {tally.stored} | {tally.duplicated} | {tally.lost} | {tally.late} "
        f"| {tally.pulses} | {tally.admitted} | {tally.unordered_pulses} | {tally.occupancy} "
        f"| {tally.expected_occupancy} | {'yes' if not tally.integrity_failures else 'no'} |",
        "",
        f"Decisions taken by doors while their link was cut or half-open: "
        f"{soak.decided_while_cut}. Result: **{verdict}**.",
        "",
        "Sampled once a minute from minute 1 on (first / last / highest; a node restarted by "
        "a fault starts a new process, so its figures start again):",
        "",
        "| process | RSS MB | open fds | journal file kB | events pending in the journal |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in names:
        rss = _spread(soak.samples, "rss_mb", name)
        fds = _spread(soak.samples, "fds", name)
        jkb = _spread(soak.samples, "journal_kb", name)
        journal = "-" if name == "hub" else " / ".join(f"{v:.0f}" for v in jkb)
        waiting = _spread(soak.samples, "pending", name)
        pending = "-" if name == "hub" else " / ".join(f"{v:.0f}" for v in waiting)
        lines.append(
            f"| {name} | {' / '.join(f'{v:.1f}' for v in rss)} "
            f"| {' / '.join(f'{v:.0f}' for v in fds)} | {journal} | {pending} |"
        )
    grown = flat(soak)
    lines += [
        "",
        "The journal file is SQLite's database and its write-ahead log: the log fills to its "
        "checkpoint size (1000 pages, about 4 MB) in the first minutes and is reused from "
        "then on; the events it holds rise during a link outage and drain after it. "
        + (
            "Memory or descriptors grew (second half's median over 1.5 x the first's): "
            + ", ".join(grown)
            if grown
            else "Memory and descriptors stayed flat: every process's second-half median is "
            "within 1.5 x its first."
        ),
        "",
        "Faults in order:",
        "",
        *(f"- {entry}" for entry in soak.fault_log),
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_doc_section(path: Path, section: str, start: str, end: str, heading: str) -> None:
    """Put ``section`` (which starts with ``heading``) in place of its old text in ``path``:
    between its markers, else under its bare heading (up to the next one), else at the end."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        head = head.rstrip()
        if head.endswith(heading):
            head = head[: -len(heading)].rstrip()
        tail = tail.lstrip("\n")
        text = head + "\n\n" + section + ("\n" + tail if tail else "")
    elif f"\n{heading}\n" in text:
        head, tail = text.split(f"\n{heading}\n", 1)
        parts = tail.split("\n## ", 1)
        text = head + "\n" + section + ("\n## " + parts[1] if len(parts) > 1 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def write_section(path: Path, section: str) -> None:
    write_doc_section(path, section, START, END, HEADING)


def flat(soak: Soak) -> list[str]:
    """Series that grew over the soak: the second half's median over 1.5 x the first's.

    (A node restarted by a fault starts low again, which can only hide growth, not fake it.)"""
    grown: list[str] = []
    for what in ("rss_mb", "fds"):
        names = {n for s in soak.samples for n in getattr(s, what)}
        for name in sorted(names):
            values = _series(soak.samples, what, name)
            if len(values) < 6:
                continue
            half = len(values) // 2
            if statistics.median(values[half:]) > 1.5 * statistics.median(values[:half]):
                grown.append(f"{name} {what}")
    return grown


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "30"))
    )
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--entries", type=int, default=2)
    parser.add_argument("--exits", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="Rewrite the Soak section.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON too.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="pintu-soak-") as tmp:
        soak = run(args.minutes, args.seed, args.entries, args.exits, Path(tmp))
    command = f"python -m bench.soak --minutes {args.minutes:g} --seed {args.seed}"
    section = report(soak, command)
    print(section)
    if args.json:
        print(json.dumps({**asdict(soak), "faults": dict(soak.faults)}, default=str))
    grown = flat(soak)
    if grown:
        print("grew during the soak: " + ", ".join(grown), file=sys.stderr)
    if args.write:
        write_section(DOC, section)
    assert soak.tally is not None
    return 0 if soak.tally.ok and not grown else 1


if __name__ == "__main__":
    sys.exit(main())
