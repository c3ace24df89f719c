"""A door's address at the registry: under its public_url in the API's door output and in
the code of the door's poster, for a camera door, a poster door and a door of both ways."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import zxingcpp
from PIL import Image

from registry.config import RegistryConfig, parse_config

if TYPE_CHECKING:
    from conftest import World

PUBLIC = "https://registry.example.id"


@pytest.fixture
def config(tmp_path: Path, store_toml: str) -> RegistryConfig:
    """The registry as it runs for phones: behind TLS, at its public address."""
    text = f'public_url = "{PUBLIC}/"\n\n[web]\nport = 0\n' + store_toml
    return parse_config(text, base=tmp_path)


def add(world: World, door_id: str, direction: str, kind: str | None) -> dict[str, str]:
    body = {"door_id": door_id, "name": door_id.title(), "direction": direction}
    if kind is not None:
        body["kind"] = kind
    r = world.client.post(
        f"/api/v1/facilities/{world.facility_id}/doors", json=body, headers=world.pic_h
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_every_door_output_carries_its_https_address(world: World) -> None:
    fid = world.facility_id
    side = add(world, "side", "both", "both")
    assert (side["kind"], side["uri"]) == ("both", f"{PUBLIC}/d/{fid}/side")
    assert add(world, "kiosk", "exit", "poster")["uri"] == f"{PUBLIC}/d/{fid}/kiosk"
    assert add(world, "back", "entrance", None)["kind"] == "camera"  # the default
    r = world.client.get(f"/api/v1/facilities/{fid}/doors", headers=world.hub_h)
    doors = {d["door_id"]: (d["kind"], d["uri"]) for d in r.json()["doors"]}
    assert doors == {
        door_id: (kind, f"{PUBLIC}/d/{fid}/{door_id}")
        for door_id, kind in [
            ("back", "camera"),
            ("kiosk", "poster"),
            ("main-in", "camera"),
            ("main-out", "camera"),
            ("side", "both"),
        ]
    }
    r = world.client.post(
        f"/api/v1/facilities/{fid}/doors/side/rename", json={"name": "Side"}, headers=world.pic_h
    )
    assert (r.json()["kind"], r.json()["uri"]) == ("both", f"{PUBLIC}/d/{fid}/side")


@pytest.mark.parametrize("store_kind", ["sqlite"])  # drawing, not storage
@pytest.mark.parametrize("kind", ["camera", "poster", "both"])
def test_each_kinds_poster_holds_the_doors_https_address(
    world: World, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    door = add(world, "gate", "both", kind)
    caplog.set_level(logging.WARNING, logger="registry.poster")
    r = world.client.get(
        f"/api/v1/facilities/{world.facility_id}/doors/gate/poster.png", headers=world.pic_h
    )
    assert r.status_code == 200, r.text
    with Image.open(io.BytesIO(r.content)) as img:
        codes = [c.text for c in zxingcpp.read_barcodes(img)]
    assert codes == [door["uri"]] == [f"{PUBLIC}/d/{world.facility_id}/gate"]
    # Behind TLS: nothing to warn of.
    assert not [r for r in caplog.records if r.name == "registry.poster"]


@pytest.mark.parametrize("store_kind", ["sqlite"])  # the request's check, not the store
def test_a_door_of_another_kind_is_refused(world: World) -> None:
    r = world.client.post(
        f"/api/v1/facilities/{world.facility_id}/doors",
        json={"door_id": "x", "name": "X", "direction": "exit", "kind": "turnstile"},
        headers=world.pic_h,
    )
    assert r.status_code == 422
    assert "kind" in r.text
    doc = world.client.get("/api/v1/openapi.json").json()
    kind = doc["components"]["schemas"]["DoorIn"]["properties"]["kind"]
    assert "both" in str(kind) and "/d/" in str(doc["components"]["schemas"]["DoorOut"])
