"""Passes and signing keys: issue, verify with the served trust list, rotate, revoke."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING

import zxingcpp
from click.testing import CliRunner
from PIL import Image

from pintu.cli import cli
from protocol import passes
from protocol.passes import Reason
from protocol.status import Status
from protocol.trust import TrustList

if TYPE_CHECKING:
    from conftest import World

WOMAN = "3174054512900001"
MAN = "3174050101900002"
DAY = 86_400


def trust_of(world: World) -> TrustList:
    r = world.client.get("/api/v1/trust", headers=world.hub_h)
    assert r.status_code == 200, r.text
    return TrustList.loads(r.content)


def issue(world: World, nik: str) -> dict[str, str]:
    r = world.client.post("/api/v1/passes", json={"nik": nik}, headers=world.op)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_issued_pass_verifies_with_the_served_trust_list(world: World) -> None:
    world.registry.set_person(WOMAN, "Siti", Status.YELLOW, 1, "test")
    doc = issue(world, WOMAN)
    verdict = passes.verify(doc["text"], trust_of(world), now=world.clock.now)
    assert verdict.ok, verdict.reason
    assert verdict.pass_ is not None
    assert verdict.pass_.subject_hex == world.registry.subject_of(WOMAN) == doc["subject"]
    assert (verdict.pass_.status, verdict.pass_.doses) == (Status.YELLOW, 1)
    # Valid pass_valid_days (30), then expired.
    assert verdict.pass_.expires_at - verdict.pass_.issued_at == 30 * DAY
    late = passes.verify(doc["text"], trust_of(world), now=world.clock.now + 30 * DAY)
    assert late.reason is Reason.EXPIRED


def test_pass_with_qr_and_unknown_person(world: World) -> None:
    world.registry.set_person(WOMAN, "Siti", Status.GREEN, 2, "test")
    r = world.client.post("/api/v1/passes", json={"nik": WOMAN, "qr": True}, headers=world.op)
    png = base64.b64decode(r.json()["qr_png_base64"])
    from io import BytesIO

    with Image.open(BytesIO(png)) as img:
        (code,) = zxingcpp.read_barcodes(img)
    assert code.text == r.json()["text"]
    r = world.client.post("/api/v1/passes", json={"nik": MAN}, headers=world.op)
    assert r.status_code == 404
    assert "no person with this NIK" in r.json()["detail"]


def test_trust_list_caching_headers(world: World) -> None:
    r = world.client.get("/api/v1/trust", headers=world.hub_h)
    etag = r.headers["etag"]
    assert r.headers["cache-control"] == "private, max-age=300"
    assert r.headers["content-type"] == "application/json"
    again = world.client.get("/api/v1/trust", headers={**world.hub_h, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    other = world.client.get("/api/v1/trust", headers={**world.hub_h, "If-None-Match": '"x"'})
    assert other.status_code == 200
    world.client.post("/api/v1/keys/rotate", headers=world.op)
    changed = world.client.get("/api/v1/trust", headers={**world.hub_h, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_rotation_keeps_old_passes_valid_and_signs_with_the_new_key(world: World) -> None:
    world.registry.set_person(WOMAN, "Siti", Status.GREEN, 2, "test")
    old = issue(world, WOMAN)
    world.clock.advance(3600)
    r = world.client.post("/api/v1/keys/rotate", headers=world.op)
    assert r.status_code == 200, r.text
    assert r.json()["retired"] == [old["kid"]]
    new_kid = r.json()["kid"]
    world.clock.advance(60)
    new = issue(world, WOMAN)
    assert new["kid"] == new_kid != old["kid"]
    trust = trust_of(world)
    now = world.clock.now
    assert passes.verify(old["text"], trust, now=now).ok
    assert passes.verify(new["text"], trust, now=now).ok
    retired = trust.get(bytes.fromhex(old["kid"]))
    assert retired is not None and retired.not_after == int(now) - 60
    # The old key no longer vouches for a pass dated after its retirement.
    key = world.registry.keyring._private_key(old["kid"])
    assert key is not None
    subject = bytes.fromhex(old["subject"])
    forged_late = passes.issue(key, subject, Status.GREEN, 2, int(now), int(now) + DAY)
    assert passes.verify(forged_late, trust, now=now).reason is Reason.KEY_NOT_VALID


def test_revocation_refuses_the_keys_passes_with_the_new_trust_list(world: World) -> None:
    world.registry.set_person(WOMAN, "Siti", Status.GREEN, 2, "test")
    old = issue(world, WOMAN)
    before = trust_of(world)
    world.client.post("/api/v1/keys/rotate", headers=world.op)
    newer = issue(world, WOMAN)
    r = world.client.post(f"/api/v1/keys/{old['kid']}/revoke", headers=world.op)
    assert r.status_code == 200, r.text
    assert r.json() == {"revoked": old["kid"], "rotated_to": None}
    now = world.clock.now
    # A door with the old list still admits; after the next sync it refuses.
    assert passes.verify(old["text"], before, now=now).ok
    after = trust_of(world)
    assert passes.verify(old["text"], after, now=now).reason is Reason.KEY_REVOKED
    assert passes.verify(newer["text"], after, now=now).ok


def test_revoking_the_current_key_rotates_first(world: World) -> None:
    world.registry.set_person(WOMAN, "Siti", Status.GREEN, 2, "test")
    old = issue(world, WOMAN)
    r = world.client.post(f"/api/v1/keys/{old['kid'].upper()}/revoke", headers=world.op)
    assert r.status_code == 200
    rotated_to = r.json()["rotated_to"]
    assert rotated_to and rotated_to != old["kid"]
    assert issue(world, WOMAN)["kid"] == rotated_to
    assert world.client.post("/api/v1/keys/00000000/revoke", headers=world.op).status_code == 404
    assert world.client.post("/api/v1/keys/xyz/revoke", headers=world.op).status_code == 400


def test_cli_issue_rotate_revoke(config_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    people = tmp_path / "people.csv"
    people.write_text(f"nik,name,status,doses\n{WOMAN},Siti,black,2\n")
    base = ["--config", str(config_file)]
    assert runner.invoke(cli, ["registry", "import-csv", *base, str(people)]).exit_code == 0
    png = tmp_path / "pass.png"
    r = runner.invoke(cli, ["registry", "issue-pass", *base, "--nik", WOMAN, "--png", str(png)])
    assert r.exit_code == 0, r.output
    text = r.stdout.strip()
    with Image.open(png) as img:
        (code,) = zxingcpp.read_barcodes(img)
    assert code.text == text
    trust_path = tmp_path / "keys" / "trust.json"
    first = passes.verify(text, TrustList.load(trust_path))
    assert first.ok and first.pass_ is not None and first.pass_.status is Status.BLACK
    r = runner.invoke(cli, ["registry", "rotate-key", *base, "--json"])
    assert r.exit_code == 0, r.output
    rotation = json.loads(r.stdout)
    assert rotation["retired"] == [first.pass_.kid.hex()]
    assert passes.verify(text, TrustList.load(trust_path)).ok
    r = runner.invoke(cli, ["registry", "revoke-key", *base, first.pass_.kid.hex()])
    assert r.exit_code == 0, r.output
    assert passes.verify(text, TrustList.load(trust_path)).reason is Reason.KEY_REVOKED
    r = runner.invoke(cli, ["registry", "revoke-key", *base, "00000000"])
    assert r.exit_code == 1 and "no key '00000000'" in r.output
    r = runner.invoke(cli, ["registry", "issue-pass", *base, "--nik", "123"])
    assert r.exit_code == 1 and "has 16 digits" in r.output
