"""The fault scenarios of tests/faults, run and tabulated for docs/reliability.md.

    python -m bench.faults             # run them, print the table
    python -m bench.faults --write     # ... and put it into docs/reliability.md

Each scenario is a test in tests/faults (real Mosquitto, ``pintu hub serve`` and ``pintu
node run`` processes, see :mod:`bench.fleet`); this runs them with pytest and writes one
row per scenario from the figures each measured, with the command that reruns it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.latency import machine
from bench.soak import DOC, write_doc_section

ROOT = Path(__file__).resolve().parents[1]
START = "<!-- reliability:faults:start -->"
END = "<!-- reliability:faults:end -->"
HEADING = "## Faults"
REPORT_ENV = "PINTU_FAULTS_REPORT"  # as tests/faults/conftest.py reads it


def run(selection: Sequence[str]) -> tuple[list[dict[str, Any]], int]:
    with tempfile.TemporaryDirectory(prefix="pintu-faults-") as tmp:
        report = Path(tmp) / "rows.jsonl"
        env = {**os.environ, REPORT_ENV: str(report)}
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection],
            cwd=ROOT,
            env=env,
            check=False,
        )
        lines = report.read_text(encoding="utf-8").splitlines() if report.exists() else []
    return [json.loads(line) for line in lines], result.returncode


def table(rows: list[dict[str, Any]], failed: bool) -> str:
    lines = [
        HEADING,
        "",
        START,
        "Produced by `python -m bench.faults --write`, which runs `pytest tests/faults` (part "
        f"of `make test`) and keeps each scenario's figures. {machine()}",
        "",
        "| fault | how it was produced | times | events sent | stored | duplicated | lost "
        "| relay pulses / released events | result | command |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        t = row["tally"]
        verdict = "pass" if not t["problems"] else "FAIL: " + "; ".join(t["problems"])
        # A scenario with a knob (an outage's length) names the setting it ran with.
        command = " ".join([*row.get("env", []), "pytest", row["test"]])
        lines.append(
            f"| {row['fault']} | {row['how']} | {row['times']} | {t['sent']} | {t['stored']} "
            f"| {t['duplicated']} | {t['lost']} | {t['pulses']} / {t['admitted']} "
            f"| {verdict}: {row['result']} | `{command}` |"
        )
    sent = sum(r["tally"]["sent"] for r in rows)
    lost = sum(r["tally"]["lost"] for r in rows)
    doubled = sum(r["tally"]["duplicated"] for r in rows)
    lines += [
        "",
        f"Across every fault run: {sent} events sent, {lost} lost, {doubled} duplicated"
        + ("; some scenario failed (see pytest's output)." if failed else "."),
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    write_doc_section(path, section, START, END, HEADING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", nargs="*", default=["tests/faults"], help="What to run.")
    parser.add_argument("--write", action="store_true", help="Rewrite the Faults section.")
    args = parser.parse_args(argv)
    rows, code = run(args.tests)
    section = table(rows, code != 0)
    print(section)
    if args.write:
        write_section(DOC, section)
    return code


if __name__ == "__main__":
    sys.exit(main())
