"""Passes and signing keys: issue, verify with the served trust list, rotate, revoke."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import zxingcpp
from click.testing import CliRunner
from httpx import Response
from PIL import Image

from pintu.cli import cli
from protocol import passes
from protocol.errors import ProtocolError
from protocol.passes import Reason
from protocol.signedlist import Kind, ListKeys
from protocol.status import Status
from protocol.statuslist import StatusList
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


# --- the doors' lists, signed with the list key ------------------------------------------
def signed_list(world: World, name: str, etag: str | None = None) -> Response:
    headers = {**world.hub_h, **({"If-None-Match": etag} if etag else {})}
    return world.client.get(f"/api/v1/lists/{name}", headers=headers)


def test_the_doors_lists_are_signed_with_the_list_key_and_only_it(world: World) -> None:
    for i, (status, age_days) in enumerate(
        [(Status.BLACK, 1), (Status.RED, 10), (Status.GREEN, 1), (Status.YELLOW, 0)]
    ):
        world.clock.advance(age_days * DAY)
        world.registry.set_person(f"31740501019000{i:02d}", f"P {i}", status, 1, "test")
    world.clock.advance(40 * DAY)
    world.registry.set_person("3174050101900099", "Old Red", Status.RED, 1, "test")
    world.clock.advance(32 * DAY)  # past a pass's lifetime and its day of margin
    world.registry.set_person("3174050101900098", "New Black", Status.BLACK, 0, "test")
    chain = signed_list(world, "keys")
    assert chain.status_code == 200 and chain.headers["content-type"] == "application/octet-stream"
    pinned = ListKeys.from_chain(chain.content)
    assert pinned == ListKeys.load(world.registry.list_keys.pin_path)
    # What `pintu registry list-keys` gives the technician: the list key, not a pass key.
    assert pinned.kids != [world.registry.keyring.current().kid_hex]
    trust = signed_list(world, "trust")
    served = TrustList.loads(pinned.open(trust.content, Kind.TRUST))
    assert set(served.keys) == set(trust_of(world).keys)
    assert served.updated_at == int(world.clock.now)  # dated when signed
    status = signed_list(world, "status")
    doors = StatusList.loads(pinned.open(status.content, Kind.STATUS))
    # Least data: only the subject turned black just now; the older changes are in every
    # valid pass already.
    assert len(doors) == 1 == int(status.headers["x-pintu-count"])
    assert doors.lookup(bytes.fromhex(world.registry.subject_of("3174050101900098"))) is not None
    # Not the pass key, nor the trust list's own bytes: only the list key opens them.
    with pytest.raises(ProtocolError):
        ListKeys.of(1, [world.registry.keyring.current().public_key], 0).open(
            trust.content, Kind.TRUST
        )
    # Revalidation: 304 while unchanged; a status change gives a new, later list.
    for name, answer in (("keys", chain), ("trust", trust), ("status", status)):
        again = signed_list(world, name, answer.headers["etag"])
        assert again.status_code == 304 and again.content == b""
    world.registry.set_person("3174050101900097", "Newer Black", Status.BLACK, 0, "test")
    changed = signed_list(world, "status", status.headers["etag"])
    assert changed.status_code == 200
    newer = StatusList.loads(pinned.open(changed.content, Kind.STATUS))
    assert len(newer) == 2 and newer.updated_at is not None and doors.updated_at is not None
    assert newer.updated_at > doors.updated_at  # later even within the same second
    assert world.client.get("/api/v1/lists/trust").status_code == 401


def test_a_list_key_rotation_is_signed_by_the_key_before_it(world: World) -> None:
    enrolled = ListKeys.from_chain(signed_list(world, "keys").content)
    etags = {name: signed_list(world, name).headers["etag"] for name in ("keys", "trust", "status")}
    r = world.client.post("/api/v1/keys/rotate-list-key", headers=world.op)
    assert r.status_code == 200, r.text
    rotation = r.json()
    assert rotation["previous"] == enrolled.kids and rotation["seq"] == 2
    # Everything the hub revalidates has changed: a door must get the chain and new lists.
    for name, etag in etags.items():
        assert signed_list(world, name, etag).status_code == 200
    chain = signed_list(world, "keys").content
    followed = enrolled.advance(chain)
    assert followed.kids == [rotation["kid"]] and followed.seq == 2
    trust = signed_list(world, "trust").content
    TrustList.loads(followed.open(trust, Kind.TRUST))
    with pytest.raises(ProtocolError, match="not pinned"):
        enrolled.open(trust, Kind.TRUST)
    # Only an operator may rotate, and the audit trail says who did.
    assert world.client.post("/api/v1/keys/rotate-list-key", headers=world.hub_h).status_code == 403
    assert "list_key.rotated" in [
        action for _, _, action, _, _ in world.registry.store.audit_entries()
    ]


def test_cli_list_keys_and_rotate_list_key(config_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--config", str(config_file)]
    out = tmp_path / "list-keys.json"
    r = runner.invoke(cli, ["registry", "list-keys", *base, "--out", str(out)])
    assert r.exit_code == 0, r.output
    first = ListKeys.load(out)
    assert first.seq == 1 and len(first.kids) == 1
    r = runner.invoke(cli, ["registry", "rotate-list-key", *base, "--json"])
    assert r.exit_code == 0, r.output
    rotation = json.loads(r.stdout)
    assert (rotation["previous"], rotation["seq"]) == (first.kids, 2)
    chain = (tmp_path / "keys" / "list-keys.chain").read_bytes()
    assert first.advance(chain).kids == [rotation["kid"]]
    r = runner.invoke(cli, ["registry", "list-keys", *base])
    assert r.exit_code == 0 and ListKeys.loads(r.stdout).kids == [rotation["kid"]]
