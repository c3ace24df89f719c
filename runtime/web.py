"""What every service's web pages share: security headers, CSRF tokens, templates, language.

The hub's dashboard and the registry's console are served the same way: a signed session
cookie (Starlette's ``SessionMiddleware``) holds the session's CSRF token, every form and
every write carries it, every answer has the headers below, and every page speaks the
language the person chose (a cookie), or their browser's, or the service's default.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.i18n import LANGUAGES, NATIVE_NAMES, Language, LanguageCode, negotiate, parse_language

logger = logging.getLogger(__name__)

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LANGUAGE_COOKIE = "pintu_lang"
TEMPLATES = Path(__file__).resolve().parent / "templates"
_YEAR_S = 365 * 24 * 3600

# Scripts, styles and connections from the service itself only: an injected script tag or
# a page framing another (clickjacking a button) gets nowhere.
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Adds the headers above to every response (pure ASGI, so streams stay streams)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csrf_token(conn: HTTPConnection) -> str:
    """The session's CSRF token; an anonymous session gets one for the login form."""
    session: dict[str, Any] = conn.session
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok(conn: HTTPConnection, provided: str | None) -> bool:
    expected = conn.session.get("csrf")
    if not isinstance(expected, str) or not provided:
        return False
    return hmac.compare_digest(expected.encode(), provided.encode())


def static_version(directory: Path) -> str:
    """A digest of the static files, appended to their URLs so browsers fetch new ones."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def make_templates(directory: Path) -> Jinja2Templates:
    """The service's templates in ``directory``, and the shared ones (the language menu)."""
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(directory), FileSystemLoader(TEMPLATES)]),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        # Each page gets gettext for its own language in its context (``page_context``).
        extensions=["jinja2.ext.i18n"],
    )
    return Jinja2Templates(env=env)


def language_of(request: Request, default: str | None) -> Language:
    """The person's choice (the cookie), else their browser's, else ``default``."""
    code = negotiate(
        request.cookies.get(LANGUAGE_COOKIE), request.headers.get("accept-language"), default
    )
    return Language(code)


def page_context(request: Request, lang: Language) -> dict[str, object]:
    """What every template needs to speak ``lang``."""
    return {
        "lang": lang,
        "_": lang.gettext,
        "gettext": lang.gettext,
        "ngettext": lang.ngettext,
        "languages": [(code, NATIVE_NAMES[code]) for code in LANGUAGES],
        "here": request.url.path,
    }


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    lang: Language,
    status: int = 200,
) -> Response:
    """The template ``name`` in ``lang``, with the app's templates and static version."""
    templates: Jinja2Templates = request.app.state.templates
    response: Response = templates.TemplateResponse(
        request,
        name,
        {
            "static_version": request.app.state.static_version,
            **page_context(request, lang),
            **context,
        },
        status,
    )
    response.headers["Content-Language"] = lang.code
    response.headers["Vary"] = "Accept-Language, Cookie"
    return response


def local_path(value: str | None) -> str:
    """``value`` if it is a path on this site, else ``/``: a redirect never leaves it."""
    if not value or len(value) > 300 or not value.startswith("/") or value.startswith("//"):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value:
        return "/"
    return value


def remember_language(response: Response, language: str) -> None:
    """Keep ``language`` in the browser's cookie."""
    response.set_cookie(
        LANGUAGE_COOKIE, language, max_age=_YEAR_S, samesite="lax", httponly=True, path="/"
    )


def form_field(form: FormData, name: str, limit: int = 200) -> str:
    """A form's text field, at most ``limit`` characters ("" when absent or a file)."""
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def chosen_language(request: Request) -> tuple[Response, LanguageCode | None]:
    """``GET /language?lang=id&next=/path``: the redirect back, remembering a valid choice,
    and the language chosen (None for one the service does not speak)."""
    language = parse_language(request.query_params.get("lang"))
    response = RedirectResponse(local_path(request.query_params.get("next")), status_code=303)
    if language is None:
        logger.info("language menu: refused %r", request.query_params.get("lang", "")[:40])
    else:
        remember_language(response, language)
    return response, language
