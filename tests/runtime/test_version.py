"""One version for every part, from the installed distribution."""

from __future__ import annotations

from importlib.metadata import version

import pintu
import registry
from runtime.version import __version__


def test_every_part_names_the_installed_version() -> None:
    assert __version__ == version("pintu")
    assert pintu.__version__ == registry.__version__ == __version__
