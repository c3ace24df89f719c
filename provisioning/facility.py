"""A facility's registration at the registry, from a terminal: request, activate, follow.

The PeduliLindungi-style flow: the person in charge (PIC) asks to register the facility;
a registry operator verifies the request and hands the PIC a one-time activation token;
the PIC activates the facility with it and sets a password, and is then given the
facility's hub token (once). ``next_step`` says what to do in each state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from provisioning.remote import Api

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FacilityRequest:
    name: str
    address: str
    type: str
    capacity: int
    pic_name: str
    pic_email: str


def _expired(state: dict[str, Any]) -> bool:
    """Whether the activation token has expired, by the registry's clock when it says."""
    if state.get("activation_expired") is not None:
        return bool(state["activation_expired"])
    expires_at = state.get("activation_expires_at")
    if not expires_at:
        return False
    return datetime.now(UTC) >= datetime.fromisoformat(str(expires_at).replace("Z", "+00:00"))


def next_step(state: dict[str, Any], registry_url: str) -> str:
    """What the PIC or technician does next, for a facility in ``state``."""
    fid = state.get("id", "<id>")
    where = f"--registry {registry_url} --facility {fid}"
    match state.get("state"):
        case "requested":
            return (
                "wait: a registry operator checks the request and gives the PIC a one-time "
                f"activation token; follow it with `pintu provision facility status {where}`"
            )
        case "verified" if _expired(state):
            return (
                f"the activation token expired at {state.get('activation_expires_at')}: ask "
                "the registry operator to verify the facility again for a new one"
            )
        case "verified":
            return (
                f"activate it before {state.get('activation_expires_at')}: "
                f"`pintu provision facility activate {where} --token-file TOKEN`"
            )
        case "active":
            return (
                "set up the facility's broker (`pintu provision broker init`) and give the hub "
                "its hub token; the PIC logs in to the registry to add doors and get posters"
            )
        case "rejected":
            return (
                f"rejected ({state.get('reason')}): put the matter right and send a new request "
                "with `pintu provision facility register`"
            )
    return "unknown state"


class RegistryFacilities(Api):
    """The registry's facility routes; every failure is a ``RemoteError`` with its reason."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, "registry")

    def register(self, request: FacilityRequest) -> dict[str, Any]:
        body = {
            "name": request.name,
            "address": request.address,
            "type": request.type,
            "capacity": request.capacity,
            "pic_name": request.pic_name,
            "pic_email": request.pic_email,
        }
        return self.call("POST", "/facilities/requests", body)

    def activate(self, facility_id: str, token: str, password: str) -> dict[str, Any]:
        body = {"token": token, "password": password}
        return self.call("POST", f"/facilities/{facility_id}/activate", body)

    def state(self, facility_id: str) -> dict[str, Any]:
        return self.call("GET", f"/facilities/requests/{facility_id}")

    def login(self, username: str, password: str) -> None:
        """Log in as the facility's PIC (or an operator): later calls carry the session."""
        session = self.call("POST", "/login", {"username": username, "password": password})
        self.headers = {"Authorization": f"Bearer {session['token']}"}

    def add_door(
        self, facility_id: str, door_id: str, name: str, direction: str, kind: str
    ) -> dict[str, Any]:
        body = {"door_id": door_id, "name": name, "direction": direction, "kind": kind}
        return self.call("POST", f"/facilities/{facility_id}/doors", body)

    def rename_door(self, facility_id: str, door_id: str, name: str) -> dict[str, Any]:
        return self.call(
            "POST", f"/facilities/{facility_id}/doors/{door_id}/rename", {"name": name}
        )

    def doors(self, facility_id: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/facilities/{facility_id}/doors").get("doors", []))

    def poster(self, facility_id: str, door_id: str, kind: str) -> bytes:
        """The door's poster as the registry makes it: ``png`` or ``pdf`` bytes."""
        return self.fetch(f"/facilities/{facility_id}/doors/{door_id}/poster.{kind}")
