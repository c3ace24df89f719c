"""A facility's registration, step by step and out of order, its doors and posters."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

import pytest
import zxingcpp
from click.testing import CliRunner
from PIL import Image

from pintu.cli import cli
from registry.models import ActivateOut, VerifyOut

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import World

PASSWORD = "another long password"  # noqa: S105 - a test account's password
HOUR = 3600


def post(
    world: World, path: str, json: object = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    r = world.client.post(f"/api/v1/facilities/{path}", json=json, headers=headers or {})
    return r.status_code, r.json() if r.content else {}


def state_of(world: World, facility_id: str) -> str:
    r = world.client.get(f"/api/v1/facilities/{facility_id}", headers=world.op)
    return str(r.json()["state"])


def test_the_whole_flow_with_every_call_out_of_order(world: World) -> None:
    fid = world.request("Pasar Baru Blok A", "Budi@Pasar.example")
    assert state_of(world, fid) == "requested"
    # requested: no activation, no doors, no hub token, no poster yet.
    code, body = post(world, f"{fid}/activate", {"token": "ra_guess", "password": PASSWORD})
    assert (code, body["error"], body["state"]) == (409, "conflict", "requested")
    assert "has to verify it first" in str(body["detail"])
    code, body = post(world, f"{fid}/hub-token", headers=world.op)
    assert (code, body["state"]) == (409, "requested")
    code, body = post(
        world, f"{fid}/doors", {"door_id": "a", "name": "A", "direction": "exit"}, world.op
    )
    assert (code, body["state"]) == (409, "requested")
    r = world.client.get(f"/api/v1/facilities/{fid}/doors/a/poster.png", headers=world.op)
    assert (r.status_code, r.json()["state"]) == (409, "requested")
    # verify -> verified, with a one-time token.
    code, body = post(world, f"{fid}/verify", headers=world.op)
    assert code == 200
    verified = VerifyOut.model_validate(body)
    assert verified.facility.state == "verified"
    assert verified.activation_token.startswith("ra_")
    assert verified.activation_expires_at == "2026-11-25T08:00:00Z"  # 72 h
    # Verifying again issues a new token; the first one stops working.
    code, body = post(world, f"{fid}/verify", headers=world.op)
    token = str(body["activation_token"])
    code, body = post(
        world, f"{fid}/activate", {"token": verified.activation_token, "password": PASSWORD}
    )
    assert (code, body["error"]) == (403, "forbidden")
    code, body = post(world, f"{fid}/activate", {"token": token, "password": "short"})
    assert code == 422 and "at least 10 characters" in str(body["detail"])
    assert state_of(world, fid) == "verified"
    # activate -> active; the answer carries the hub token, once.
    code, body = post(world, f"{fid}/activate", {"token": token, "password": PASSWORD})
    assert code == 200, body
    activated = ActivateOut.model_validate(body)
    assert activated.facility.state == "active"
    assert activated.username == "budi@pasar.example"
    assert activated.hub_token.startswith("rh_")
    # The used token: 409 naming the state.
    code, body = post(world, f"{fid}/activate", {"token": token, "password": PASSWORD})
    assert (code, body["state"]) == (409, "active")
    assert "was used" in str(body["detail"])
    # Out of order after activation: no verify, no reject.
    code, body = post(world, f"{fid}/verify", headers=world.op)
    assert (code, body["state"]) == (409, "active")
    code, body = post(world, f"{fid}/reject", {"reason": "late"}, world.op)
    assert (code, body["state"]) == (409, "active")
    # The PIC logs in, adds doors and gets posters; the hub token works.
    pic = world.login("budi@pasar.example", PASSWORD)
    pic_h = {"Authorization": f"Bearer {pic}"}
    code, body = post(
        world,
        f"{fid}/doors",
        {"door_id": "gate-1", "name": "Gerbang 1", "direction": "entrance"},
        pic_h,
    )
    # Without a public_url the registry's address is its API's own.
    assert code == 201 and body["uri"] == f"http://127.0.0.1:0/d/{fid}/gate-1"
    code, body = post(
        world, f"{fid}/doors", {"door_id": "gate-1", "name": "Again", "direction": "exit"}, pic_h
    )
    assert code == 409
    r = world.client.get(f"/api/v1/facilities/{fid}/doors", headers=pic_h)
    assert [d["door_id"] for d in r.json()["doors"]] == ["gate-1"]
    me = world.client.get("/api/v1/me", headers={"Authorization": f"Bearer {activated.hub_token}"})
    assert me.json() == {"kind": "hub", "name": fid, "facility_id": fid, "facilities": [fid]}
    me = world.client.get("/api/v1/me", headers=pic_h)
    assert me.json()["kind"] == "pic" and me.json()["facilities"] == [fid]
    # A new hub token replaces the old one.
    code, body = post(world, f"{fid}/hub-token", headers=pic_h)
    assert code == 201 and body["replaced"] == 1
    old = world.client.get("/api/v1/me", headers={"Authorization": f"Bearer {activated.hub_token}"})
    assert old.status_code == 401


def test_rejection_and_its_out_of_order_calls(world: World) -> None:
    fid = world.request("Klinik Sehat", "klinik@example.com")
    code, body = post(world, f"{fid}/reject", {"reason": " "}, world.op)
    assert code == 422
    code, body = post(world, f"{fid}/reject", {"reason": "no such address"}, world.op)
    assert code == 200 and body["state"] == "rejected" and body["reason"] == "no such address"
    for path, payload in [
        ("verify", None),
        ("reject", {"reason": "again"}),
        ("activate", {"token": "ra_x", "password": PASSWORD}),
        ("hub-token", None),
    ]:
        code, body = post(world, f"{fid}/{path}", payload, world.op)
        assert (code, body["state"]) == (409, "rejected"), path
    r = world.client.get("/api/v1/facilities?state=rejected", headers=world.op)
    assert [f["id"] for f in r.json()["facilities"]] == [fid]


def test_expired_activation_token_is_410_and_a_new_verification_helps(world: World) -> None:
    fid = world.request("Kantor Camat", "camat@example.go.id")
    token = world.verify(fid)
    world.clock.advance(72 * HOUR)
    world.operator = world.login("dewi")  # the operator's session lasts 12 h
    code, body = post(world, f"{fid}/activate", {"token": token, "password": PASSWORD})
    assert (code, body["error"]) == (410, "gone")
    assert "expired at 2026-11-25T08:00:00Z" in str(body["detail"])
    assert state_of(world, fid) == "verified"
    token = world.verify(fid)
    code, body = post(world, f"{fid}/activate", {"token": token, "password": PASSWORD})
    assert code == 200


def test_unknown_facility_and_bad_requests(world: World) -> None:
    code, body = post(world, "nope-000000/verify", headers=world.op)
    assert code == 404
    code, body = post(world, "nope-000000/activate", {"token": "x", "password": PASSWORD})
    assert code == 404
    code, body = post(
        world,
        "requests",
        {
            "name": "X",
            "address": "Y",
            "type": "spaceport",
            "capacity": 0,
            "pic_name": "Z",
            "pic_email": "not-an-email",
            "extra": 1,
        },
    )
    assert code == 422
    fields = {p["field"] for p in body["problems"]}  # type: ignore[union-attr]
    assert fields == {"type", "capacity", "pic_email", "extra"}


def test_a_pic_cannot_touch_another_facility(world: World) -> None:
    _, other_pic, other_hub = world.add_facility("Mall Lain", "lain@example.com")
    other_h = {"Authorization": f"Bearer {other_pic}"}
    code, body = post(
        world,
        f"{world.facility_id}/doors",
        {"door_id": "x", "name": "X", "direction": "exit"},
        other_h,
    )
    assert (code, body["error"]) == (403, "forbidden")
    r = world.client.get(
        f"/api/v1/facilities/{world.facility_id}/doors/main-in/poster.png", headers=other_h
    )
    assert r.status_code == 403
    r = world.client.get(
        f"/api/v1/facilities/{world.facility_id}", headers={"Authorization": f"Bearer {other_hub}"}
    )
    assert r.status_code == 403
    # The same PIC e-mail may run a second facility, with the same password.
    fid = world.request("Mall Kedua", "pic@mall.example")
    token = world.verify(fid)
    code, body = post(world, f"{fid}/activate", {"token": token, "password": "not the password"})
    assert code == 409 and "activate with its password" in str(body["detail"])
    code, body = post(
        world, f"{fid}/activate", {"token": token, "password": "correct horse battery"}
    )
    assert code == 200
    me = world.client.get("/api/v1/me", headers=world.pic_h).json()
    assert sorted(me["facilities"]) == sorted([world.facility_id, fid])


@pytest.mark.parametrize("store_kind", ["sqlite"])  # drawing, not storage
@pytest.mark.parametrize("kind", ["png", "pdf"])
def test_poster_renders_with_a_readable_door_code(
    world: World, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="registry.poster")
    r = world.client.get(
        f"/api/v1/facilities/{world.facility_id}/doors/main-in/poster.{kind}", headers=world.pic_h
    )
    assert r.status_code == 200, r.text
    if kind == "pdf":
        assert r.headers["content-type"] == "application/pdf"
        assert r.content.startswith(b"%PDF-")
        return
    assert r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.size == (1240, 1754)
        codes = zxingcpp.read_barcodes(img)
    address = f"http://127.0.0.1:0/d/{world.facility_id}/main-in"
    assert [c.text for c in codes] == [address]
    # Phones open plain http too, but a registry for phones belongs behind TLS: it says so.
    (warning,) = [r for r in caplog.records if r.name == "registry.poster"]
    assert "not an https address" in warning.getMessage() and address in warning.getMessage()
    r = world.client.get(
        f"/api/v1/facilities/{world.facility_id}/doors/nope/poster.png", headers=world.pic_h
    )
    assert r.status_code == 404


def test_operator_issues_a_hub_token_from_the_cli(world: World, config_file: Path) -> None:
    # config_file names the same directory as the world's registry: the CLI works beside it.
    base = ["registry", "hub-token", "--config", str(config_file)]
    r = CliRunner().invoke(cli, [*base, "--facility", world.facility_id])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    assert token.startswith("rh_")
    me = world.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["facility_id"] == world.facility_id
    assert world.client.get("/api/v1/me", headers=world.hub_h).status_code == 401
    r = CliRunner().invoke(cli, [*base, "--facility", "nope"])
    assert r.exit_code == 1 and "no facility 'nope'" in r.output
