"""``make demo`` stops everything when make alone is interrupted.

GNU make passes a SIGINT on to no child and waits for its children before it dies of it;
the demo watches make and stops as if interrupted itself. Shown here with make running a
stand-in for the demo that uses the demo's own watch (the whole demo is
tests/test_demo.py's).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

STAND_IN = """
import sys, threading
from pintu.demo import watch_make

stop = threading.Event()
watching = watch_make(stop, poll_s=0.05)
print("watching" if watching else "not under make", flush=True)
sys.exit(0 if stop.wait(60) else 3)
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("shell", [False, True], ids=["direct", "through-a-shell"])
def test_an_interrupt_to_make_stops_the_demo_and_make(tmp_path: Path, shell: bool) -> None:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN, encoding="utf-8")
    # A recipe with a shell's metacharacter runs through /bin/sh, one without directly.
    recipe = f"{sys.executable} {script}" + (" && true" if shell else "")
    (tmp_path / "Makefile").write_text(f"demo:\n\t{recipe}\n", encoding="utf-8")
    make = subprocess.Popen(
        ["make", "-s", "-C", str(tmp_path), "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the interrupt goes to make alone, as `kill -INT` sends it
    )
    try:
        assert make.stdout is not None
        assert make.stdout.readline().strip() == "watching"
        make.send_signal(signal.SIGINT)
        try:
            make.wait(15)
        except subprocess.TimeoutExpired:
            pytest.fail("make is still waiting for the demo 15 s after its interrupt")
        assert make.returncode != 0  # make dies of its interrupt once its child is done
        # The stand-in stopped because of the watch (status 0), not its 60 s timeout.
        rest = make.stdout.read()
        assert "Error 3" not in rest, rest
    finally:
        if make.poll() is None:
            make.kill()
        make.wait()
        if make.stdout is not None:
            make.stdout.close()


def test_without_make_there_is_nothing_to_watch() -> None:
    code = (
        "import threading; from pintu.demo import watch_make; "
        "print(watch_make(threading.Event()) is None)"
    )
    # Run from this test's interpreter, whose command is python, whatever ran pytest.
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "True"
