"""The visitor's wallet on the registry's side: one-time links that put a person's pass
on a phone, and the refresh that keeps that pass current.

A link holds a 256-bit random token; a phone that opens it exchanges it, once, for a
wallet credential (another 256-bit random secret) that the wallet keeps. The registry
keeps only the SHA-256 of each, compares in constant time, and keeps the pass it last
gave each wallet: a refresh answers the same pass until the person's status or doses
change, its key is revoked or retired, or half its life is gone, then signs a new one.
Using a new link retires the person's older wallets: their refresh answers ``moved``.
The wallet holds the pass, the holder's name and its credential; never the NIK.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Literal

import segno

from protocol import passes
from registry import auth
from registry.auth import Principal
from registry.errors import Conflict, Gone, NotFound, Unauthenticated
from registry.records import Person, Wallet, WalletLink
from registry.service import IssuedPass, Registry

logger = logging.getLogger(__name__)

LINK_PREFIX = "wl_"
CREDENTIAL_PREFIX = "wc_"
ACTIVATE_PATH = "/wallet/activate"
WALLET_ACTOR = "wallet"
LinkState = Literal["ready", "unknown", "used", "expired"]


class WalletMoved(Unauthenticated):
    """The wallet's credential was retired: the person activated another phone."""


@dataclass(frozen=True)
class IssuedLink:
    token: str
    url: str
    person: Person
    expires_at: int


@dataclass(frozen=True)
class WalletPass:
    """What a wallet shows: the pass text a door reads, and what it says in words."""

    text: str
    name: str
    status: str
    doses: int
    kid: str
    issued_at: int
    expires_at: int

    @classmethod
    def of(cls, issued: IssuedPass) -> WalletPass:
        p = issued.person
        return cls(
            issued.text, p.name, p.status.label, p.doses, issued.kid, issued.issued_at,
            issued.expires_at,
        )  # fmt: skip

    @classmethod
    def held(cls, wallet: Wallet, person: Person) -> WalletPass:
        return cls(
            wallet.pass_text, person.name, wallet.pass_status, wallet.pass_doses,
            wallet.pass_kid, wallet.pass_issued_at, wallet.pass_expires_at,
        )  # fmt: skip

    def qr_rows(self) -> list[str]:
        """The QR code's modules, a row a string of 0 and 1 (level M, as printed passes),
        for the wallet to draw without a QR encoder of its own."""
        code = segno.make(self.text, error="m", micro=False)
        return ["".join("1" if bit else "0" for bit in row) for row in code.matrix]


@dataclass(frozen=True)
class Activated:
    credential: str
    wallet_pass: WalletPass
    retired: int


def base_url(registry: Registry) -> str:
    """The address phones open the registry at."""
    return registry.config.base_url()


def issue_link(
    registry: Registry, nik: str, actor: Principal | str, base: str | None = None
) -> IssuedLink:
    """A one-time link that puts ``nik``'s pass on a phone, valid ``wallet_link_hours``."""
    subject = registry.subject_of(nik)
    person = registry.store.get_person(subject)
    if person is None:
        raise NotFound("no person with this NIK; add them (or import them) first")
    token = auth.new_token(LINK_PREFIX)
    now = registry.now()
    expires_at = now + round(registry.config.wallet_link_hours * 3600)
    registry.store.add_wallet_link(
        WalletLink(auth.token_hash(token), subject, now, expires_at, None)
    )
    registry._audit(actor, "wallet.link", subject)
    url = f"{(base or base_url(registry)).rstrip('/')}{ACTIVATE_PATH}?token={token}"
    return IssuedLink(token, url, person, expires_at)


def _link(registry: Registry, token: str) -> WalletLink | None:
    if not token.startswith(LINK_PREFIX) or len(token) > 100:
        return None
    found = registry.store.get_wallet_link(auth.token_hash(token))
    if found is None or not hmac.compare_digest(found.token_hash, auth.token_hash(token)):
        return None
    return found


def link_state(registry: Registry, token: str) -> LinkState:
    """Whether a link can still be used (the link's page asks before its script does)."""
    link = _link(registry, token)
    if link is None:
        return "unknown"
    if link.used_at is not None:
        return "used"
    return "expired" if registry.now() >= link.expires_at else "ready"


def activate(registry: Registry, token: str, address: str) -> Activated:
    """Exchange a link's token for a wallet credential and the person's pass.

    ``NotFound`` for a token the registry never issued, ``Conflict`` (state ``used``) for
    a used one, ``Gone`` for an expired one; of two uses at once exactly one succeeds.
    """
    # Per link and per address: a guessed token is one of 2^256, but a loop is cut short.
    registry.wallet_calls.take("link:" + auth.token_hash(token), address)
    link = _link(registry, token)
    if link is None:
        raise NotFound("no such wallet link; ask for a new one")
    if link.used_at is not None:
        raise Conflict("this wallet link was used already; ask for a new one", "used")
    if registry.now() >= link.expires_at:
        raise Gone("this wallet link has expired; ask for a new one")
    person = registry.store.get_person(link.subject)
    if person is None:
        raise NotFound("the person of this link is no longer registered")
    issued = registry.sign_pass(person, WALLET_ACTOR, "wallet.pass")
    credential = auth.new_token(CREDENTIAL_PREFIX)
    wallet = _wallet(auth.token_hash(credential), person.subject, registry.now(), issued)
    retired = registry.store.use_wallet_link(link.token_hash, wallet)
    registry._audit(WALLET_ACTOR, "wallet.activated", person.subject, f"retired={retired}")
    logger.info("a wallet was activated (%d older retired)", retired)
    return Activated(credential, WalletPass.of(issued), retired)


def _wallet(credential_hash: str, subject: str, at: int, issued: IssuedPass) -> Wallet:
    return Wallet(
        credential_hash, subject, at, None, issued.text, issued.person.status.label,
        issued.person.doses, issued.kid, issued.issued_at, issued.expires_at,
    )  # fmt: skip


def refresh(registry: Registry, credential: str, address: str) -> WalletPass:
    """The current pass of the wallet holding ``credential``.

    ``Unauthenticated`` for a credential the registry does not know, ``WalletMoved`` for
    one retired by a newer activation; both change nothing. ``ReadThrottled`` past the
    wallet's calls a minute.
    """
    presented = auth.token_hash(credential)
    registry.wallet_calls.take(presented, address)
    wallet = (
        registry.store.get_wallet(presented) if credential.startswith(CREDENTIAL_PREFIX) else None
    )
    if wallet is None or not hmac.compare_digest(wallet.credential_hash, presented):
        raise Unauthenticated("unknown wallet credential")
    if wallet.retired_at is not None:
        raise WalletMoved("this pass was moved to another phone")
    person = registry.store.get_person(wallet.subject)
    if person is None:
        raise Unauthenticated("the person of this wallet is no longer registered")
    if _current(registry, wallet, person):
        return WalletPass.held(wallet, person)
    issued = registry.sign_pass(person, WALLET_ACTOR, "wallet.pass")
    renewed = _wallet(wallet.credential_hash, wallet.subject, wallet.created_at, issued)
    if not registry.store.set_wallet_pass(renewed):
        raise WalletMoved("this pass was moved to another phone")
    return WalletPass.of(issued)


def _current(registry: Registry, wallet: Wallet, person: Person) -> bool:
    """Whether the wallet's pass still says what a new one would, and will for a while."""
    now = registry.now()
    if (wallet.pass_status, wallet.pass_doses) != (person.status.label, person.doses):
        return False
    if now >= wallet.pass_issued_at + (wallet.pass_expires_at - wallet.pass_issued_at) // 2:
        return False
    verdict = passes.verify(wallet.pass_text, registry.keyring.trust_list(), now=now)
    return verdict.ok
