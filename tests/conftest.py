"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

# Every GPIO device in the tests runs on gpiozero's mock pins; nothing needs a Pi.
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
