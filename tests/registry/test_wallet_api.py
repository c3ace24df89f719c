"""The wallet's endpoints over HTTP: a one-time link exchanged for a credential, the
refresh that follows the person's status, and the credentials it refuses."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from pintu.cli import cli
from protocol import passes
from protocol.status import Status
from registry import schema, wallet
from registry.service import Registry

from .conftest import Clock, World, bearer

NIK = "3174054512900001"


def rows(registry: Registry, table: str) -> list[tuple[object, ...]]:
    """Every row of one of the wallet's tables, as stored."""
    store: Any = registry.store
    return [tuple(row) for row in store._db.fetch(select(schema.metadata.tables[table]))]


def new_link(registry: Registry) -> str:
    registry.set_person(NIK, "Siti Rahayu", Status.GREEN, 2, "test")
    issued = wallet.issue_link(registry, NIK, "test")
    token = parse_qs(urlsplit(issued.url).query)["token"][0]
    assert token == issued.token and issued.url.startswith("http://127.0.0.1:")
    return token


def activate(world: World, token: str) -> dict[str, object]:
    r = world.client.post("/api/v1/wallet/activate", json={"token": token})
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, object] = r.json()
    return body


def test_a_link_gives_a_wallet_the_pass_a_door_reads(world: World) -> None:
    token = new_link(world.registry)
    body = activate(world, token)
    held = body["pass"]
    assert isinstance(held, dict)
    verdict = passes.verify(
        held["text"], world.registry.keyring.trust_list(), now=world.registry.now()
    )
    assert verdict.ok and verdict.pass_ is not None
    assert held["status"] == "green" and held["name"] == "Siti Rahayu"
    assert NIK not in str(body)
    assert held["qr"] and set("".join(held["qr"])) == {"0", "1"}
    # The link's token and the credential are kept only as hashes.
    for table in ("wallet_links", "wallets"):
        dump = str(rows(world.registry, table))
        assert token not in dump and str(body["credential"]) not in dump


def test_the_refresh_follows_the_status(world: World, clock: Clock) -> None:
    body = activate(world, new_link(world.registry))
    h = bearer(str(body["credential"]))
    first = world.client.get("/api/v1/wallet/pass", headers=h).json()
    assert first["text"] == body["pass"]["text"]  # type: ignore[index]
    clock.advance(60)
    world.registry.set_person(NIK, "Siti Rahayu", Status.BLACK, 2, "test")
    r = world.client.get("/api/v1/wallet/pass", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "black"
    parsed = passes.parse(r.json()["text"])
    assert isinstance(parsed, passes.Pass) and parsed.status is Status.BLACK


@pytest.mark.parametrize("credential", ["wc_wrong", "rs_not-a-wallet", ""])
def test_a_wrong_credential_is_refused(world: World, credential: str) -> None:
    activate(world, new_link(world.registry))
    before = rows(world.registry, "wallets")
    r = world.client.get("/api/v1/wallet/pass", headers=bearer(credential) if credential else {})
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"
    assert rows(world.registry, "wallets") == before


def test_a_second_phone_retires_the_first(world: World, clock: Clock) -> None:
    first = activate(world, new_link(world.registry))
    clock.advance(10)
    second = activate(world, new_link(world.registry))
    assert second["retired"] == 1
    world.registry.set_person(NIK, "Siti Rahayu", Status.RED, 0, "test")
    before = rows(world.registry, "wallets")
    r = world.client.get("/api/v1/wallet/pass", headers=bearer(str(first["credential"])))
    assert r.status_code == 401 and r.json()["error"] == "wallet_moved"
    assert rows(world.registry, "wallets") == before
    r = world.client.get("/api/v1/wallet/pass", headers=bearer(str(second["credential"])))
    assert r.status_code == 200 and r.json()["status"] == "red"


def test_a_link_works_once_and_not_after_it_expires(world: World, clock: Clock) -> None:
    token = new_link(world.registry)
    activate(world, token)
    r = world.client.post("/api/v1/wallet/activate", json={"token": token})
    assert r.status_code == 409 and r.json()["state"] == "used"
    late = new_link(world.registry)
    clock.advance(24 * 3600)
    r = world.client.post("/api/v1/wallet/activate", json={"token": late})
    assert r.status_code == 410
    r = world.client.post("/api/v1/wallet/activate", json={"token": "wl_made-up"})
    assert r.status_code == 404


def test_two_phones_using_one_link_at_once_get_one_wallet(world: World) -> None:
    token = new_link(world.registry)
    results: list[int] = []
    start = threading.Barrier(2)

    def use() -> None:
        start.wait(timeout=10)
        r = world.client.post("/api/v1/wallet/activate", json={"token": token})
        results.append(r.status_code)

    threads = [threading.Thread(target=use) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [201, 409]
    assert len(rows(world.registry, "wallets")) == 1


def test_refreshes_are_limited(world: World) -> None:
    h = bearer(str(activate(world, new_link(world.registry))["credential"]))
    codes = [world.client.get("/api/v1/wallet/pass", headers=h).status_code for _ in range(13)]
    assert codes[:12] == [200] * 12 and codes[12] == 429


def test_cli_prints_a_one_time_link(config_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    people = tmp_path / "people.csv"
    people.write_text(f"nik,name,status,doses\n{NIK},Siti,yellow,1\n")
    base = ["--config", str(config_file)]
    assert runner.invoke(cli, ["registry", "import-csv", *base, str(people)]).exit_code == 0
    r = runner.invoke(cli, ["registry", "issue-pass", *base, "--nik", NIK, "--link", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert "/wallet/activate?token=wl_" in out["link"] and NIK not in r.stdout
    r = runner.invoke(cli, ["registry", "issue-pass", *base, "--nik", NIK, "--link"])
    assert r.exit_code == 0 and r.stdout.strip().startswith("http://")


def test_an_operator_makes_a_link_over_the_api(world: World) -> None:
    world.registry.set_person(NIK, "Siti Rahayu", Status.GREEN, 2, "test")
    r = world.client.post("/api/v1/wallet/links", json={"nik": NIK}, headers=world.op)
    assert r.status_code == 201, r.text
    token = parse_qs(urlsplit(r.json()["link"]).query)["token"][0]
    assert activate(world, token)["retired"] == 0
    r = world.client.post("/api/v1/wallet/links", json={"nik": NIK}, headers=world.pic_h)
    assert r.status_code == 403


@pytest.mark.parametrize("store_kind", ["sqlite"])
def test_many_phones_activate_within_a_minute(world: World) -> None:
    # The limit is per link and per address, not one budget for every activation.
    tokens = [new_link(world.registry) for _ in range(15)]
    assert [activate(world, token)["retired"] for token in tokens] == [0] + [1] * 14


def test_the_wallet_script_reads_its_own_words() -> None:
    from registry.console.wallet import catalog_json
    from runtime.i18n import Language

    words = json.loads(catalog_json(Language.of("id")))["messages"]
    assert words["Green"] == "Hijau" and words["Black"] == "Hitam"
    assert words["Moved to another phone"] == "Dipindahkan ke ponsel lain"
    # Only the registry's scripts' words: none of the hub dashboard's.
    assert "{n} s ago" not in words
