"""Node memory benchmark: the resident memory of a door node process at work.

    python -m bench.memory                # print the table
    python -m bench.memory --write        # ... and put it into docs/benchmarks.md
    python -m bench.memory --seconds 10   # a quicker run
    python -m bench.memory --check        # exit 1 if the node reaches the budget

``pintu node run`` runs as a process of its own, as under systemd: simulated GPIO pins, a
camera replaying a folder of frames in a loop at 15 fps (passes held up among empty
frames), a private Mosquitto and a stand-in hub acking the node's events. Its resident
set size is sampled every second while it admits the passes it sees. Beside it, sampled
in the same run, the baseline: a bare Python that has imported the libraries the node
cannot do without and does nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.latency import (
    NODE,
    HubHelper,
    HubStats,
    library_versions,
    machine,
    node_config,
    subject,
    write_section,
)
from bench.rss import (
    MB,
    ReadySocket,
    Samples,
    end_baseline,
    sample_together,
    start_baseline,
    stop_process,
)
from firmware.synthetic import PRESETS, render
from protocol import passes
from protocol.status import Status
from protocol.trust import SigningKey, TrustList
from provisioning.mosquitto import Mosquitto

START = "<!-- bench:memory:start -->"
END = "<!-- bench:memory:end -->"
HEADING = "## Node memory"
BUDGET_MB = 100.0  # resident set size of a node process, in 10^6 bytes
FPS = 15.0
PASSES = 20  # different subjects in the folder
PASS_FRAMES = 2  # frames each pass is held up for ...
IDLE_FRAMES = 4  # ... followed by this many empty frames
BASELINE_IMPORTS = "numpy, zxingcpp, paho.mqtt.client, gpiozero, pydantic"
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Result:
    node: Samples
    baseline: Samples
    hub: HubStats
    seconds: float
    frames: int

    @property
    def over_budget(self) -> bool:
        return self.node.max_mb >= BUDGET_MB


def toml_text(doc: dict[str, Any]) -> str:
    """The node's configuration as TOML: plain values and nested tables only."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    while tables:
        name, table = tables.pop(0)
        lines.append(f"[{name}]")
        for key, value in table.items():
            if isinstance(value, dict):
                tables.append((f"{name}.{key}", value))
            else:
                lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def write_frames(folder: Path, key: SigningKey, seed: int) -> int:
    """The camera's frames: each pass held up for a few frames, then empty ones."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    now = int(time.time())
    index = 0
    for n in range(1, PASSES + 1):
        text = passes.issue(key, subject(n), Status.GREEN, 2, now - 60, now + 86_400)
        for shown in [text] * PASS_FRAMES + [None] * IDLE_FRAMES:
            Image.fromarray(render(shown, PRESETS["easy"], rng)).save(folder / f"{index:04d}.png")
            index += 1
    return index


def measure(seconds: float, seed: int = 2024) -> Result:
    """Run a node process for ``seconds`` after it is ready, and a baseline beside it."""
    if seconds < 1:
        raise ValueError("sample for at least a second")
    node_samples, base_samples = Samples("node"), Samples("baseline")
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pintu-bench-")))
        broker = Mosquitto(work / "broker")
        broker.start()
        stack.callback(broker.stop)
        helper = HubHelper(broker, NODE, rate=0.0)
        helper.start()
        stack.callback(helper.close)

        key = SigningKey.generate()
        state_dir = work / "node"
        state_dir.mkdir()
        TrustList.of([key.trusted()], updated_at=int(time.time())).save(state_dir / "trust.json")
        frames = write_frames(work / "frames", key, seed)
        doc = node_config(
            state_dir,
            broker,
            pulse_ms=100,
            source={"kind": "folder", "path": str(work / "frames"), "loop": True, "fps": FPS},
        )
        doc["scan"] = {"cooldown_s": 2.0}
        doc["policy"] = {"anti_passback_s": 0}  # the same visitors come round every loop
        config_path = work / "node.toml"
        config_path.write_text(toml_text(doc), encoding="utf-8")

        ready = ReadySocket(work / "notify.sock")
        stack.callback(ready.close)
        env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "NOTIFY_SOCKET": str(ready.path)}
        env.pop("WATCHDOG_USEC", None)
        log_path = work / "node.log"
        with log_path.open("wb") as log:
            node = subprocess.Popen(
                [sys.executable, "-m", "pintu", "node", "run", "--config", str(config_path)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        stack.callback(stop_process, node)
        baseline = start_baseline(BASELINE_IMPORTS)
        stack.callback(stop_process, baseline)
        try:
            ready.wait(READY_TIMEOUT_S)
        except RuntimeError as err:
            raise RuntimeError(f"the node: {err}; its log:\n{tail(log_path)}") from err

        elapsed = sample_together(
            seconds,
            [(node, node_samples), (baseline, base_samples)],
            died=lambda p: f"exit code {p.returncode}; node log:\n{tail(log_path)}",
        )

        node.send_signal(signal.SIGTERM)
        code = node.wait(30)
        if code != 0:
            raise RuntimeError(f"the node stopped with {code}; log:\n{tail(log_path)}")
        end_baseline(baseline)
        hub = helper.stop()
    return Result(node_samples, base_samples, hub, elapsed, frames)


def tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:]


def report(result: Result, command: str) -> str:
    node, base = result.node, result.baseline
    verdict = "within" if not result.over_budget else "OVER"
    loop_s = result.frames / FPS
    lines = [
        machine(),
        "",
        f"Command: `{command}`; psutil {library_versions(['psutil']).split(' ', 1)[1]}.",
        "",
        "`pintu node run` in a process of its own, on simulated pins, with a camera replaying "
        f"a folder of {result.frames} frames ({PASSES} passes, each held up for "
        f"{PASS_FRAMES} frames among empty ones; `easy` scene, 640x480) in a loop at "
        f"{FPS:g} fps, {loop_s:.0f} s a round, with anti-passback off so every round admits "
        "every pass again; a private Mosquitto and a stand-in hub acking the node's events. "
        f"Its resident set size was sampled every second for {result.seconds:.0f} s after it "
        "reported ready. The baseline, sampled beside it, is a bare "
        f'`python -c "import {BASELINE_IMPORTS}"` that then waits. MB are 10^6 bytes; '
        "USS is the memory the process alone holds (not shared with others), at the end.",
        "",
        "| process | RSS when ready | RSS max | RSS final | USS final |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for samples, label in ((node, "node"), (base, "baseline (imports only)")):
        lines.append(
            f"| {label} | {samples.first_mb:.1f} MB | {samples.max_mb:.1f} MB "
            f"| {samples.final_mb:.1f} MB | {samples.uss / MB:.1f} MB |"
        )
    lines += [
        "",
        f"The node's own share over the baseline: {node.max_mb - base.max_mb:+.1f} MB at its "
        f"largest; it grew by {node.final_mb - node.first_mb:+.1f} MB from ready to the end "
        f"and was at its largest from {node.max_at_s} s on. "
        f"{result.hub.node_events} events of the node reached the hub "
        f"({result.hub.acks_sent} acked).",
        "",
        f"Budget: a node's RSS under {BUDGET_MB:g} MB. Largest in this run: "
        f"{node.max_mb:.1f} MB ({verdict} the budget).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description="Sample the resident memory of a door node process at work, beside a "
        "bare Python that has imported the same libraries.",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=25.0,
        help="how long to sample once the node is ready (default 25)",
    )
    parser.add_argument("--seed", type=int, default=2024, help="seed of the synthetic frames")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs/benchmarks.md"),
        help="the file --write updates (default docs/benchmarks.md)",
    )
    parser.add_argument(
        "--write", action="store_true", help="replace the memory section of --out with the results"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit with status 1 if the node's RSS reaches {BUDGET_MB:g} MB",
    )
    args = parser.parse_args(argv)
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")

    shown = ["python -m bench.memory"]
    if args.seconds != 25.0:
        shown.append(f"--seconds {args.seconds:g}")
    if args.seed != 2024:
        shown.append(f"--seed {args.seed}")
    print(f"sampling a node process for {args.seconds:g} s ...", flush=True)
    result = measure(args.seconds, args.seed)
    section = report(result, " ".join(shown))
    print()
    print(section)
    if args.write:
        write_section(args.out, section, START, END, HEADING)
        print(f"\nwrote {args.out}")
    if args.check and result.over_budget:
        print(
            f"node memory over budget: {result.node.max_mb:.1f} MB >= {BUDGET_MB:g} MB",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
