"""The PIC's console: a facility's doors, their posters, its hub token, visits and sync."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

PAGES: list[tuple[str, Callable[[Request], Awaitable[Response]], str]] = []
