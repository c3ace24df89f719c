"""Sealed node bundles waiting for their door node: the hub's part of the provisioning QR.

A technician leaves a node's bundle here, sealed with a key only the provisioning QR
holds (``protocol.enrolment``); the node, shown the QR, fetches it once by its lookup id.
The hub keeps only the ciphertext, the lookup id, the expiry and when it was used, and drops
the ciphertext on that one use, or once it has expired (swept when the next bundle is
filed): afterwards only the fact that it was used or expired is left.

The store keeps them (``hub.store.enrolments``). A claim checks and marks the row in one
transaction, so two nodes showing the same QR at once get it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from hub.errors import HubError
from hub.records import iso
from protocol.events import utcnow

if TYPE_CHECKING:
    pass

T = TypeVar("T")


class Refusal(StrEnum):
    """Why a claim was refused; the value is the API's error code."""

    UNKNOWN = "unknown_token"
    USED = "token_used"
    EXPIRED = "token_expired"


class EnrolmentRefused(HubError):
    """A sealed bundle cannot be handed out: no such lookup id, used already, or expired."""

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class EnrolmentRecord:
    """A sealed bundle as the hub files it (the ciphertext itself is not in here)."""

    lookup_id: str
    expires_at: datetime
    created_at: datetime
    used_at: datetime | None


def refusal(lookup_id: str, expires_at: datetime, used_at: datetime | None) -> None:
    """Raise why a stored row cannot be claimed now, if it cannot."""
    if used_at is not None:
        raise EnrolmentRefused(
            Refusal.USED, f"this provisioning QR was used at {iso(used_at)}; enrol the node again"
        )
    if utcnow() >= expires_at:
        raise EnrolmentRefused(
            Refusal.EXPIRED,
            f"this provisioning QR expired at {iso(expires_at)}; enrol the node again",
        )


def unknown(lookup_id: str) -> EnrolmentRefused:
    return EnrolmentRefused(Refusal.UNKNOWN, "no enrolment for this provisioning QR")
