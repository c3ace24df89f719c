"""The operators' signing keys: the trust list as it is, a rotation and a revocation, each
after a confirmation page that says what will stop working."""

from __future__ import annotations

import logging
import re

from starlette.responses import Response

from registry.console.persons import when
from registry.console.session import Page, field, logged_in
from registry.errors import NotFound, RegistryError

logger = logging.getLogger(__name__)

_KID = re.compile(r"^[0-9a-f]{8}$")


def _keys_page(
    page: Page, *, status: int = 200, error: str | None = None, notice: str | None = None
) -> Response:
    try:
        trust = page.registry.keyring.trust_list()
        current = page.registry.keyring.current().kid_hex
    except RegistryError as err:
        return page.render("keys.html", {"keys": [], "error": page.error_text(err)}, 503)
    keys = []
    for key in sorted(trust.keys.values(), key=lambda k: k.not_before or 0, reverse=True):
        if key.revoked:
            state = page._("Revoked: passes it signed are refused")
        elif key.kid_hex == current:
            state = page._("Current: signs new passes")
        elif key.not_after is not None:
            state = page._("Retired: its passes stay valid until they expire")
        else:
            state = page._("Valid")
        keys.append(
            {
                "kid": key.kid_hex,
                "state": state,
                "revoked": key.revoked,
                "since": when(page, key.not_before),
                "until": when(page, key.not_after),
            }
        )
    return page.render("keys.html", {"keys": keys, "error": error, "notice": notice}, status)


@logged_in("operator")
async def keys_page(page: Page) -> Response:
    return await page.run(_keys_page, page)


@logged_in("operator")
async def rotate_key(page: Page) -> Response:
    form = await page.request.form()
    if field(form, "confirm", 3) != "yes":
        return page.render("confirm.html", {"action": "rotate", "kid": None})
    try:
        rotation = await page.run(page.registry.rotate_key, page.caller)
    except RegistryError as err:
        return await page.run(_keys_page, page, status=503, error=page.error_text(err))
    notice = page._("Key %(kid)s is now current; new passes are signed with it.") % {
        "kid": rotation.new_kid
    }
    return await page.run(_keys_page, page, notice=notice)


@logged_in("operator")
async def revoke_key(page: Page) -> Response:
    kid = str(page.request.path_params["kid"]).lower()[:8]
    if not _KID.match(kid):
        return await page.run(_keys_page, page, status=404, error=page.error_text(NotFound(kid)))
    form = await page.request.form()
    if field(form, "confirm", 3) != "yes":
        return page.render("confirm.html", {"action": "revoke", "kid": kid})
    try:
        await page.run(page.registry.revoke_key, kid, page.caller)
    except NotFound as err:
        return await page.run(_keys_page, page, status=404, error=page.error_text(err))
    except RegistryError as err:
        return await page.run(_keys_page, page, status=503, error=page.error_text(err))
    notice = page._("Key %(kid)s is revoked.") % {"kid": kid}
    return await page.run(_keys_page, page, notice=notice)
