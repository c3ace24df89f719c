"""The demo's visitors with phones: they scan the doors' posters instead of showing a pass
to a camera, through the registry's API exactly as the wallet's page does.

Each has a wallet (a one-time link exchanged for a credential, as a phone does when it
opens the link) and keeps coming back: in by an entrance's poster, a while inside, out by
an exit's, a while away. They are people of their own, not of the camera doors' crowd, so
the two ways into the building count side by side on the dashboard, the phones' marked.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

import httpx
import numpy as np

from pintu.demo_registry import RegistryOperator

logger = logging.getLogger(__name__)

# Province 31, regency 71, district 09: apart from the camera crowd's district 01.
_NAMES = ("Rina Wulandari", "Bayu Pratama", "Sari Handayani", "Joko Susilo", "Lina Marlina")


@dataclass
class _Visitor:
    nik: str
    name: str
    credential: str = ""
    inside: bool = False
    due: float = 0.0  # time.monotonic() of the next scan


class PhoneVisitors:
    """A few visitors who check in and out by the doors' posters, in a thread of its own."""

    def __init__(
        self,
        registry_url: str,
        operator: RegistryOperator,
        facility_id: str,
        entrances: list[str],
        exits: list[str],
        rng: np.random.Generator,
        *,
        count: int = 4,
        stay_s: tuple[float, float] = (40.0, 120.0),
    ) -> None:
        self.url = registry_url
        self.facility_id = facility_id
        self.entrances, self.exits = entrances, exits
        self.rng = rng
        self.stay_s = stay_s
        self.answers: dict[str, int] = {}
        self._stop = threading.Event()
        self._http = httpx.Client(base_url=registry_url, timeout=30)
        self.visitors = [
            _Visitor(f"317109{1 + i:02d}0190{9001 + i:04d}", _NAMES[i % len(_NAMES)])
            for i in range(count)
        ]
        for visitor in self.visitors:
            operator.set_person(visitor.nik, visitor.name, "green", 2)
            link = operator.wallet_link(visitor.nik)
            token = link.split("token=", 1)[1]
            r = self._http.post("/api/v1/wallet/activate", json={"token": token})
            r.raise_for_status()
            visitor.credential = str(r.json()["credential"])
            # The first visits spread over the first minute.
            visitor.due = time.monotonic() + float(rng.uniform(2.0, 60.0))
        self._thread = threading.Thread(target=self._run, name="demo-phones", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(35)
        self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for visitor in self.visitors:
                if self._stop.is_set():
                    return
                if now >= visitor.due:
                    self._scan(visitor)
            due = min(v.due for v in self.visitors)
            self._stop.wait(max(0.2, due - time.monotonic()))

    def _scan(self, visitor: _Visitor) -> None:
        doors = self.exits if visitor.inside else self.entrances
        door = doors[int(self.rng.integers(len(doors)))]
        try:
            r = self._http.post(
                "/api/v1/wallet/checkins",
                headers={"Authorization": f"Bearer {visitor.credential}"},
                json={"id": uuid.uuid4().hex, "facility_id": self.facility_id, "door_id": door},
            )
            r.raise_for_status()
            answer = r.json()
        except httpx.HTTPError as err:
            logger.warning("a phone visitor could not check in at %s: %s", door, err)
            visitor.due = time.monotonic() + 15.0
            return
        key = f"{answer['state']}:{answer['signal']}"
        self.answers[key] = self.answers.get(key, 0) + 1
        if answer["state"] == "queued" or answer["admit"]:
            # Let in (or out) by the hub, or by staff looking at the screen.
            visitor.inside = not visitor.inside
        low, high = self.stay_s
        visitor.due = time.monotonic() + float(self.rng.uniform(low, high))
