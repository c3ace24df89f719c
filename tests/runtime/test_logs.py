"""The one logging set-up of the entry points."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from runtime import logs

SCRIPT = (
    "import logging; from runtime import logs; logs.setup({verbosity}); "
    "log = logging.getLogger('pintu.test'); "
    "log.debug('d'); log.info('i'); log.warning('w'); log.error('e')"
)


def _run(verbosity: int, stderr_path: Path, journal: bool) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    with stderr_path.open("wb") as stderr:
        if journal:
            st = os.fstat(stderr.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        subprocess.run(
            [sys.executable, "-c", SCRIPT.format(verbosity=verbosity)],
            stderr=stderr,
            stdout=subprocess.DEVNULL,
            env=env,
            check=True,
            timeout=60,
        )
    return stderr_path.read_text().splitlines()


def test_levels_follow_the_verbosity() -> None:
    assert logs.level_for(0) == logging.WARNING
    assert logs.level_for(1) == logging.INFO
    assert logs.level_for(5) == logging.DEBUG
    assert [logs.priority(n) for n in (50, 40, 30, 20, 10)] == [2, 3, 4, 6, 7]


def test_a_terminal_gets_times_and_levels(tmp_path: Path) -> None:
    lines = _run(1, tmp_path / "stderr", journal=False)
    assert [line.split(" ", 2)[2] for line in lines] == [
        "INFO pintu.test: i",
        "WARNING pintu.test: w",
        "ERROR pintu.test: e",
    ]


def test_the_journal_gets_priorities_instead_of_times(tmp_path: Path) -> None:
    lines = _run(0, tmp_path / "stderr", journal=True)
    assert lines == ["<4>WARNING pintu.test: w", "<3>ERROR pintu.test: e"]


def test_handlers_set_before_are_kept() -> None:
    root = logging.getLogger()
    mine = logging.NullHandler()
    root.addHandler(mine)
    try:
        before, level = list(root.handlers), root.level
        logs.setup(2)
        assert (root.handlers, root.level) == (before, level)
    finally:
        root.removeHandler(mine)
