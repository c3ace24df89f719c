"""The logging set-up of every Pintu entry point: the ``pintu`` command and the services it
runs (door node, hub, registry). Library code only logs (``logging.getLogger(__name__)``);
handlers are configured here, once, by the entry point.

Logs go to stderr, so stdout stays clean for ``--json`` readers. Under systemd, stderr is
the journal (``$JOURNAL_STREAM`` names it): the journal stamps each line with its own time,
so the line carries a ``<N>`` syslog priority prefix instead, and ``journalctl -p warning``
filters by level.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Final, TextIO

FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT: Final = "<%(priority)d>%(levelname)s %(name)s: %(message)s"
# Python's levels as syslog priorities (sd-daemon(3)): error 3, warning 4, info 6, debug 7.
_PRIORITIES: Final = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4))


def level_for(verbosity: int) -> int:
    """Warnings and worse by default; ``-v`` adds info, ``-vv`` debug."""
    return logging.WARNING - 10 * max(0, min(verbosity, 2))


def priority(levelno: int) -> int:
    """The syslog priority of a Python log level."""
    for floor, prio in _PRIORITIES:
        if levelno >= floor:
            return prio
    return 6 if levelno >= logging.INFO else 7


def to_journal(stream: TextIO) -> bool:
    """Whether ``stream`` is the journal systemd connected (``$JOURNAL_STREAM``)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.priority = priority(record.levelno)
        return super().format(record)


def setup(verbosity: int = 0, *, stream: TextIO | None = None) -> None:
    """Configure the root logger for an entry point: the level from ``verbosity`` and one
    handler on ``stream`` (stderr by default).

    Like ``logging.basicConfig``, it does nothing when the root logger has handlers
    already: whoever set them (a test harness, an embedding program) keeps them.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    if to_journal(stream):
        handler.setFormatter(_JournalFormatter(JOURNAL_FORMAT))
    else:
        handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level_for(verbosity))
