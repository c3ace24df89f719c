"""The demo's registry work over its HTTP API, as an operator and a facility's PIC do it.

An operator logs in, issues passes and changes statuses; the facility is requested by its
PIC (a public call), verified by the operator (which answers a one-time activation token),
activated by the PIC with that token (which answers the facility's hub token) and given its
doors. Nothing here reaches into the registry's store: every step is a call a real
operator's tools or a PIC's browser make.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from pintu.demo_config import DemoError
from protocol.errors import ProtocolError
from protocol.signedlist import ListKeys

if TYPE_CHECKING:
    from registry.service import Registry

logger = logging.getLogger(__name__)

API = "/api/v1"


class RegistryCallError(DemoError):
    """The registry answered a call with an error."""


@dataclass(frozen=True)
class FacilityRequest:
    name: str
    address: str
    type: str
    capacity: int
    pic_name: str
    pic_email: str
    pic_password: str


@dataclass(frozen=True)
class DoorRequest:
    door_id: str
    name: str
    direction: str  # the registry's words: entrance | exit
    # camera: a door node only; both: its poster may also be scanned by a phone
    kind: str = "camera"


@dataclass(frozen=True)
class ActiveFacility:
    facility_id: str
    pic_username: str
    hub_token: str


def open_registry(config_path: Path) -> Registry:
    """The registry's store beside ``config_path``, opened (and made, the first time) here.

    Opening it the first time makes its subject key and signing key; its advice to back the
    subject key up does not apply to a registry made for a demonstration or a test run, so
    it is kept quiet. The caller adds what ``pintu registry add-operator`` and ``pintu
    registry import-csv`` would, closes it, and starts the service: only one process makes
    the keys.
    """
    from registry.config import load_config
    from registry.service import Registry

    registry_log = logging.getLogger("registry")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        return Registry.open(load_config(config_path))
    finally:
        registry_log.setLevel(level)


class RegistryOperator:
    """An operator's session with the registry's API."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url + API, timeout=timeout_s)
        self.token = ""

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        try:
            response = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as err:
            raise RegistryCallError(f"{method} {path}: the registry did not answer: {err}") from err
        if response.status_code >= 300:
            raise RegistryCallError(
                f"{method} {path}: {response.status_code} {response.text.strip()[:300]}"
            )
        return response.json() if response.content else None

    def login(self, username: str, password: str) -> None:
        answer = self._call(
            "POST", "/login", auth=False, json={"username": username, "password": password}
        )
        self.token = str(answer["token"])

    def trust(self) -> bytes:
        """The trust list the doors start with, as the hub later syncs it."""
        response = self.http.get("/trust", headers={"Authorization": f"Bearer {self.token}"})
        if response.status_code != 200:
            raise RegistryCallError(f"GET /trust: {response.status_code} {response.text[:300]}")
        return response.content

    def list_keys(self) -> bytes:
        """The list keys the doors pin (``pintu registry list-keys``), as JSON: the newest
        keys of the registry's list-key chain, each statement checked."""
        path = "/lists/keys"
        response = self.http.get(path, headers={"Authorization": f"Bearer {self.token}"})
        if response.status_code != 200:
            raise RegistryCallError(f"GET {path}: {response.status_code} {response.text[:300]}")
        try:
            return ListKeys.from_chain(response.content).dumps().encode("utf-8")
        except ProtocolError as err:
            raise RegistryCallError(f"GET {path}: {err}") from err

    def issue_pass(self, nik: str) -> str:
        """A pass for the person, signed with the registry's current key; its text."""
        return str(self._call("POST", "/passes", json={"nik": nik})["text"])

    def wallet_link(self, nik: str) -> str:
        """A one-time link that puts the person's pass in a phone's wallet."""
        return str(self._call("POST", "/wallet/links", json={"nik": nik})["link"])

    def trace(self, subject_hex: str) -> tuple[int, int]:
        """Contact tracing for a subject over the tracing window: (visits, contacts)."""
        answer = self._call("GET", "/tracing", params={"subject": subject_hex})
        visits = sum(len(f["visits"]) for f in answer["facilities"])
        return visits, int(answer["contact_count"])

    def set_person(self, nik: str, name: str, status: str, doses: int) -> str:
        """Set a person's status; what the registry did (created, updated, ...)."""
        body = {"nik": nik, "name": name, "status": status, "doses": doses}
        return str(self._call("POST", "/persons", json=body)["outcome"])

    def register_facility(
        self, request: FacilityRequest, doors: list[DoorRequest]
    ) -> ActiveFacility:
        """Request, verify, activate, and add the doors: the registry's facility flow."""
        created = self._call(
            "POST",
            "/facilities/requests",
            auth=False,
            json={
                "name": request.name,
                "address": request.address,
                "type": request.type,
                "capacity": request.capacity,
                "pic_name": request.pic_name,
                "pic_email": request.pic_email,
            },
        )
        facility_id = str(created["id"])
        verified = self._call("POST", f"/facilities/{facility_id}/verify")
        activated = self._call(
            "POST",
            f"/facilities/{facility_id}/activate",
            auth=False,
            json={"token": verified["activation_token"], "password": request.pic_password},
        )
        for door in doors:
            self._call(
                "POST",
                f"/facilities/{facility_id}/doors",
                json={
                    "door_id": door.door_id,
                    "name": door.name,
                    "direction": door.direction,
                    "kind": door.kind,
                },
            )
        logger.info("facility %s active with %d doors", facility_id, len(doors))
        return ActiveFacility(
            facility_id=facility_id,
            pic_username=str(activated["username"]),
            hub_token=str(activated["hub_token"]),
        )
