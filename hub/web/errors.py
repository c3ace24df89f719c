"""Errors the web side answers with: JSON ``{"error": code, "detail": ...}`` and a 4xx/5xx.

``detail`` is a sentence for a person, or for bad input a list of ``{"field", "message"}``
naming each field that was wrong.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtime.api import Refused, body_unreadable, problems, where

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


def error_response(
    status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
    if exc.status >= 500:
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(exc.status, exc.error, exc.detail, exc.headers)


async def refused_handler(request: Request, exc: Exception) -> Response:
    """A request refused by a check before its handler (``runtime.api``)."""
    assert isinstance(exc, Refused)  # noqa: S101 - registered for Refused only
    return error_response(exc.status, exc.code, exc.sentence or exc.problems)


async def validation_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's validation of the parameters and the body, in the hub's error body.

    A body that is not a JSON object is 400 bad_json; a parameter that is malformed,
    400 bad_request; a path that names nothing (``/alerts/x/ack``), 404; a body that does
    not follow its schema, 422 invalid with each field named.
    """
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
    unreadable = body_unreadable(exc)
    if unreadable is not None:
        return error_response(400, "bad_json", [{"field": "body", "message": unreadable}])
    found = [{"field": p["field"], "message": p["message"]} for p in problems(exc)]
    place = where(exc)
    if place == "path":  # e.g. /alerts/0/ack: no alert has that id
        first = exc.errors()[0]
        name = str(first["loc"][-1]).removesuffix("_id")
        return error_response(404, "not_found", f"No {name} {first.get('input')}.")
    if place == "body":
        return error_response(422, "invalid", found)
    return error_response(400, "bad_request", found)
