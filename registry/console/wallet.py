"""The visitor's wallet: an installable web app (PWA) on the phone that holds the
person's signed pass and shows it as a QR code for camera doors, offline too.

The pages are one shell (``wallet.html``) and its script (``static/wallet.js``): the
script keeps the pass and the wallet's credential in the browser's storage, draws the
QR code from the modules the registry sends, and asks ``GET /api/v1/wallet/pass`` for
the current pass whenever it opens, comes back online or is looked at again. The
service worker (``static/wallet-sw.js``, served as ``/wallet/sw.js`` so its scope is
the wallet) keeps the shell for offline use. A link's page checks the link before its
script exchanges it, so a used or expired link gets its own page and status.
"""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from protocol.ids import is_id
from registry import wallet
from registry.checkins import Checkins
from registry.console.session import page_of
from registry.errors import NotFound
from runtime import web
from runtime.i18n import Language, js_catalog

SERVICE_WORKER = Path(__file__).resolve().parent.parent / "static" / "wallet-sw.js"

# The script's messages are those of the registry's own scripts.
SCRIPTS = "registry/static/"
ICON_SIZES = (192, 512)
THEME = "#0b3d2e"


def _json_script(doc: Any) -> str:
    """``doc`` as JSON, safe inside a ``<script type="application/json">``."""
    return json.dumps(doc).replace("<", "\\u003c")


def catalog_json(lang: Language) -> str:
    """The wallet script's messages, safe inside a ``<script type="application/json">``."""
    return _json_script({"locale": lang.tag, "messages": js_catalog(lang.code, SCRIPTS)})


def _shell(
    request: Request,
    lang: Language,
    mode: str,
    status: int = 200,
    door: dict[str, str] | None = None,
) -> Response:
    response = web.render(
        request,
        "wallet.html",
        {
            "mode": mode,
            "catalog_json": catalog_json(lang),
            "door": door,
            "door_json": _json_script(door or {}),
        },
        lang,
        status,
    )
    response.headers["Cache-Control"] = "no-cache"
    return response


async def wallet_page(request: Request) -> Response:
    page = await page_of(request)
    return _shell(request, page.lang, "show")


async def activate_page(request: Request) -> Response:
    """A link's page: the wallet shell that exchanges it, or why it cannot be used."""
    page = await page_of(request)
    _ = page._
    token = request.query_params.get("token", "")[:200]
    state = await page.run(wallet.link_state, page.registry, token)
    if state == "ready":
        response = _shell(request, page.lang, "activate")
        response.headers["Cache-Control"] = "no-store"
        return response
    texts = {
        "unknown": (
            404,
            _("This link is not known"),
            _("Check that the whole link was copied, or ask for a new one."),
        ),
        "used": (
            410,
            _("This link was used already"),
            _(
                "A pass link works once. If the pass is not on this phone, ask the registry "
                "or the front desk for a new link; using it moves the pass to this phone."
            ),
        ),
        "expired": (
            410,
            _("This link has expired"),
            _("A pass link works for a limited time. Ask the registry or the front desk "
              "for a new one."),
        ),
    }  # fmt: skip
    status, title, text = texts[state]
    response = page.render(
        "wallet_message.html", {"title": title, "text": text, "state": state}, status
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def door_page(request: Request) -> Response:
    """A door's poster address: with a pass on this phone, the wallet checks in (or out)
    there and shows the result screen; without one, how to get a pass, and that staff can
    check the visitor in by NIK and name."""
    page = await page_of(request)
    _ = page._
    facility_id = request.path_params["facility_id"]
    door_id = request.path_params["door_id"]
    try:
        if not (is_id(facility_id) and is_id(door_id)):
            raise NotFound("not a door's address")
        facility, door = await page.run(Checkins(page.registry).door, facility_id, door_id)
    except NotFound:
        response = page.render(
            "wallet_message.html",
            {
                "title": _("This door is not known"),
                "text": _(
                    "The code may be old, or the place no longer checks visitors in with "
                    "Pintu. Ask the staff at the door: they can check you in with your NIK "
                    "and name."
                ),
                "state": "unknown-door",
            },
            404,
        )
        response.headers["Cache-Control"] = "no-store"
        return response
    about = {
        "facility_id": facility.id,
        "facility_name": facility.name,
        "door_id": door.door_id,
        "door_name": door.name,
        "direction": door.direction,
        "kind": door.kind,
    }
    response = _shell(request, page.lang, "door", door=about)
    response.headers["Cache-Control"] = "no-store"
    return response


async def service_worker(request: Request) -> Response:
    return FileResponse(
        SERVICE_WORKER,
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache"},
    )


async def manifest(request: Request) -> Response:
    page = await page_of(request)
    _ = page._
    doc: dict[str, Any] = {
        "name": _("Pintu pass"),
        "short_name": "Pintu",
        "description": _("Your pass for Pintu doors, on your phone, offline too."),
        "lang": page.lang.tag,
        "start_url": "/wallet/",
        "scope": "/wallet/",
        "display": "standalone",
        "orientation": "portrait",
        "background_color": "#ffffff",
        "theme_color": THEME,
        "icons": [
            {"src": f"/wallet/icon-{size}.png", "sizes": f"{size}x{size}", "type": "image/png"}
            for size in ICON_SIZES
        ]
        + [
            {
                "src": "/wallet/icon-512.png",
                "sizes": "512x512",
                "type": "image/png",
                "purpose": "maskable",
            }
        ],
    }
    return Response(
        json.dumps(doc, ensure_ascii=False),
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache", "Vary": "Accept-Language, Cookie"},
    )


@functools.cache
def icon_png(size: int) -> bytes:
    """The wallet's icon: a white open door on the theme's green, inside the safe zone
    of a maskable icon (the middle 80%)."""
    image = Image.new("RGB", (size, size), THEME)
    draw = ImageDraw.Draw(image)
    u = size / 16
    draw.rectangle((5 * u, 3.5 * u, 11 * u, 12.5 * u), outline="white", width=max(2, round(u)))
    draw.polygon(
        [(5 * u, 3.5 * u), (9 * u, 4.5 * u), (9 * u, 13.3 * u), (5 * u, 12.5 * u)], "white"
    )
    r = 0.45 * u
    draw.ellipse((8 * u - r, 8.6 * u - r, 8 * u + r, 8.6 * u + r), fill=THEME)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


async def icon(request: Request) -> Response:
    size = int(request.path_params["size"])
    if size not in ICON_SIZES:
        return Response(status_code=404)
    return Response(
        icon_png(size), media_type="image/png", headers={"Cache-Control": "max-age=86400"}
    )
