"""Errors the web side answers with: JSON ``{"error": code, "detail": ...}`` and a 4xx/5xx.

``detail`` is a sentence for a person, or for bad input a list of ``{"field", "message"}``
naming each field that was wrong.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

logger = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        detail: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}


def field_errors(err: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Each problem of a pydantic validation, with the field it is about."""
    problems = []
    for item in err.errors():
        field = ".".join(str(p) for p in item["loc"]) or "body"
        message = "unknown field" if item["type"] == "extra_forbidden" else item["msg"]
        problems.append({"field": f"{prefix}{field}", "message": message})
    return problems


def error_response(
    status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
    if exc.status >= 500:
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(exc.status, exc.error, exc.detail, exc.headers)
