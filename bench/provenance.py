"""Where a benchmark's figures come from: the commit of the code that ran, the day, and how
busy the machine was (the machines these run on are often shared)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commit() -> str:
    """The checkout's commit, marked when its code differs from it.

    The documents are left out of the comparison: a benchmark that rewrites its section of
    ``docs/benchmarks.md`` does not make the next one's code uncommitted.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from the PATH
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"],  # noqa: S607
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} with changes not committed" if dirty else head


def today() -> str:
    return time.strftime("%Y-%m-%d")


def load() -> float:
    """The 1-minute load average, or NaN where the system does not tell it."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def filesystem(directory: Path) -> str:
    """The type of the file system ``directory`` is on (ext4, tmpfs, ...)."""
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            best = ("", "?")
            for line in mounts:
                _, mount, fstype, *_ = line.split()
                if str(directory.resolve()).startswith(mount) and len(mount) >= len(best[0]):
                    best = (mount, fstype)
        return f"{best[1]}"
    except OSError:
        return "a local file system"
