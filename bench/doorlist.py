"""What a door holds of the population: the whole status list against the least-data one.

    python -m bench.doorlist --persons 1000000

A synthetic population (seeded): each person's last status change falls uniformly within
the past ``--history-days``, and the statuses are drawn with the weights given (green,
yellow, red, black). ``protocol.statuslist.door_items`` picks the records a door needs for
passes valid ``--pass-days``; both lists are built as the registry builds them and their
sizes are measured: the payload on the wire (the retained MQTT message, before its 78
bytes of signature envelope), the file on the door's disk and the door's list in memory.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from protocol.status import Status
from protocol.statuslist import StatusList, door_items

DAY_S = 86_400


def population(
    persons: int, history_days: int, weights: list[float], now: int, seed: int
) -> list[tuple[bytes, Status, int]]:
    rng = random.Random(seed)
    statuses = rng.choices(list(Status), weights=weights, k=persons)
    return [
        (rng.randbytes(12), status, now - rng.randrange(history_days * DAY_S))
        for status in statuses
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--history-days", type=int, default=365)
    parser.add_argument("--pass-days", type=int, default=30)
    parser.add_argument(
        "--weights",
        default="70,15,12,3",
        help="green,yellow,red,black shares (default 70,15,12,3)",
    )
    parser.add_argument("--seed", type=int, default=2021)
    args = parser.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",")]
    now = int(time.time())
    items = population(args.persons, args.history_days, weights, now, args.seed)
    whole = StatusList.from_items(items, updated_at=now)
    started = time.perf_counter()
    least = StatusList.from_items(door_items(items, now, args.pass_days * DAY_S), updated_at=now)
    took = time.perf_counter() - started
    rows = [
        ("every subject (before)", whole),
        ("least data (now)", least),
    ]
    given = " ".join(argv if argv is not None else sys.argv[1:])
    out = [
        f"Command: `python -m bench.doorlist {given}`",
        f"{args.persons:,} persons, last changes over {args.history_days} days, statuses "
        f"green/yellow/red/black {args.weights}, passes valid {args.pass_days} days.",
        "",
        "| door's status list | subjects | on the wire (retained message) | on the door (file) "
        "| in memory |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, status_list in rows:
        size = len(status_list.dumps())
        memory = sys.getsizeof(status_list.dumps()) - 16  # the one bytes object it keeps
        out.append(
            f"| {name} | {len(status_list):,} | {size / 1e6:.2f} MB | {size / 1e6:.2f} MB "
            f"| {memory / 1e6:.2f} MB |"
        )
    out.append("")
    out.append(f"Picking the least-data records took {took:.2f} s.")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
