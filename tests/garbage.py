"""Garbage other tests left, collected quietly before a test that runs the collector itself."""

from __future__ import annotations

import gc
import warnings


def collect_what_others_left() -> None:
    """Collect the garbage earlier tests left: a socket one of them never closed would
    otherwise be reported as the test that runs the collector, where it is found."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
