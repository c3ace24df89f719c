"""Resident memory of benchmark processes: one sampling helper for every memory benchmark.

A process under test and its baseline (a bare Python that has imported the same
libraries and waits) are sampled together, once a second, so that a busy moment of the
machine falls on both. ``Samples`` holds one process's resident set sizes and its unique
set size at the end; ``sample_together`` runs the clock.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

MB = 1e6  # the tables give 10^6 bytes


@dataclass
class Samples:
    """Resident set sizes of one process, in bytes, one a second."""

    label: str
    rss: list[int] = field(default_factory=list)
    uss: int = 0  # memory the process alone holds, at the end

    @property
    def first_mb(self) -> float:
        return self.rss[0] / MB

    @property
    def max_mb(self) -> float:
        return max(self.rss) / MB

    @property
    def final_mb(self) -> float:
        return self.rss[-1] / MB

    @property
    def max_at_s(self) -> int:
        """The second at which the largest sample was first seen."""
        return self.rss.index(max(self.rss))

    @property
    def first_half_growth_mb(self) -> float:
        """Growth over the first half of the run, to set the second half's against."""
        return (self.rss[len(self.rss) // 2] - self.rss[0]) / MB

    @property
    def half_growth_mb(self) -> float:
        """Growth over the second half of the run: what a process still gains once its
        caches and pools have filled; near zero for memory that stays flat."""
        return (self.rss[-1] - self.rss[len(self.rss) // 2]) / MB


class ReadySocket:
    """The socket systemd would listen on: a service says READY=1 on it once it runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))

    def wait(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no READY=1 within {timeout_s:g} s")
            self._sock.settimeout(left)
            try:
                message = self._sock.recv(4096).decode("utf-8", errors="replace")
            except TimeoutError:
                continue
            if "READY=1" in message.splitlines():
                return

    def close(self) -> None:
        self._sock.close()


def start_baseline(imports: str) -> subprocess.Popen[str]:
    """A bare Python that imports ``imports`` (``"numpy, paho.mqtt.client"``) and waits
    for its standard input to close; returns once the imports are done."""
    script = f"import {imports}, sys\nprint('ready', flush=True)\nsys.stdin.read()"
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        stop_process(process)
        raise RuntimeError(f"the baseline process (import {imports}) did not start")
    return process


def end_baseline(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()
    process.wait(10)
    process.stdout.close()


def sample_together(
    seconds: float,
    targets: Sequence[tuple[subprocess.Popen[Any], Samples]],
    died: Callable[[subprocess.Popen[Any]], str] = lambda p: f"exit code {p.returncode}",
    each_second: Callable[[int], None] | None = None,
) -> float:
    """Sample every target's RSS once a second for ``seconds`` (``round(seconds) + 1``
    samples, the first at once), then its USS; the seconds it took.

    A target that exits ends the run at once with a ``RuntimeError`` naming ``died(p)``.
    ``each_second(n)`` is called after the n-th sample, for a load that changes with time.
    """
    processes = [(popen, psutil.Process(popen.pid), samples) for popen, samples in targets]
    started = time.monotonic()
    count = round(seconds)
    for second in range(count + 1):
        for _, process, samples in processes:
            samples.rss.append(process.memory_info().rss)
        if each_second is not None:
            each_second(second)
        if second == count:
            break
        due = started + second + 1
        watched = processes[0][0]
        # The sampling interval; the first target exiting ends it at once.
        with contextlib.suppress(subprocess.TimeoutExpired):
            watched.wait(max(0.0, due - time.monotonic()))
        for popen, _, _ in processes:
            if popen.poll() is not None:
                raise RuntimeError(f"a sampled process exited: {died(popen)}")
    for _, process, samples in processes:
        samples.uss = process.memory_full_info().uss
    return time.monotonic() - started


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Make sure a child is gone (after a failure; a clean run has stopped it already)."""
    if process.poll() is None:
        process.kill()
        process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()
