"""What the console does, from a shell: ``pintu registry requests list|verify|reject`` on
the registry's configuration, and ``pintu provision facility doors add|rename|list|poster``
against a running ``pintu registry serve``. A refused command changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import zxingcpp
from click.testing import CliRunner
from PIL import Image

from pintu.cli import cli
from protocol.poster import door_address

from .pages import Server

PIC_EMAIL = "wati@apotek.example"
PIC_PASSWORD = "wati's long password"  # noqa: S105 - a test account's password


def run(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def request(server: Server, name: str) -> str:
    body = {
        "name": name,
        "type": "shop",
        "address": "Jl. Dago 10, Bandung",
        "capacity": 30,
        "pic_name": "Wati",
        "pic_email": PIC_EMAIL,
    }
    return str(server.public("POST", "/facilities/requests", json=body)["id"])


def test_requests_listed_verified_and_rejected_from_a_shell(server: Server) -> None:
    config = str(server.config_path)
    wanted, unwanted = request(server, "Apotek Sehat"), request(server, "Apotek Palsu")
    listed = run("registry", "requests", "list", "--config", config, "--json")
    assert listed.exit_code == 0
    waiting = {r["id"]: r for r in json.loads(listed.output)["requests"]}
    assert {wanted, unwanted} <= set(waiting)
    assert waiting[wanted]["pic_email"] == PIC_EMAIL

    missing = run("registry", "requests", "reject", "--config", config, unwanted)
    assert missing.exit_code == 2 and "--reason" in missing.output
    rejected = run(
        "registry", "requests", "reject", "--config", config, unwanted, "--reason", "No permit."
    )
    assert rejected.exit_code == 0, rejected.output
    state = server.public("GET", f"/facilities/requests/{unwanted}")
    assert (state["state"], state["reason"]) == ("rejected", "No permit.")
    again = run("registry", "requests", "verify", "--config", config, unwanted)
    assert again.exit_code == 1 and "rejected" in again.output

    verified = run(
        "registry", "requests", "verify", "--config", config, wanted, "--url", server.url, "--json"
    )
    assert verified.exit_code == 0, verified.output
    link = json.loads(verified.output)["activation_link"]
    assert link.startswith(f"{server.url}/activate/{wanted}?token=ra_")
    token = link.split("token=", 1)[1]
    server.public(
        "POST", f"/facilities/{wanted}/activate", json={"token": token, "password": PIC_PASSWORD}
    )
    active = run("registry", "requests", "list", "--config", config, "--state", "active")
    assert wanted in active.output and unwanted not in active.output


def test_doors_added_renamed_listed_and_their_posters_from_a_shell(
    server: Server, tmp_path: Path
) -> None:
    facility = request(server, "Apotek Dago")
    token = server.api("POST", f"/facilities/{facility}/verify")["activation_token"]
    server.public(
        "POST", f"/facilities/{facility}/activate", json={"token": token, "password": PIC_PASSWORD}
    )
    password = tmp_path / "pic-password"
    password.write_text(PIC_PASSWORD + "\n", encoding="utf-8")
    login = ["--registry", server.url, "--facility", facility, "--user", PIC_EMAIL]
    login += ["--password-file", str(password)]
    doors = ["provision", "facility", "doors"]

    bad = run(
        *doors, "add", *login, "--door", "front door", "--name", "Front", "--direction", "both"
    )
    assert bad.exit_code == 1 and "422" in bad.output and "door_id" in bad.output
    empty = run(*doors, "list", *login, "--json")
    assert json.loads(empty.output) == {"doors": []}

    added = run(
        *doors, "add", *login, "--door", "front", "--name", "Front", "--direction", "both",
        "--kind", "both",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    added = run(
        *doors,
        "add",
        *login,
        "--door",
        "side",
        "--name",
        "Side",
        "--direction",
        "exit",
        "--kind",
        "poster",
    )
    assert added.exit_code == 0, added.output
    renamed = run(*doors, "rename", *login, "--door", "side", "--name", "Side exit")
    assert renamed.exit_code == 0, renamed.output
    listed = json.loads(run(*doors, "list", *login, "--json").output)["doors"]
    assert [(d["door_id"], d["name"], d["direction"], d["kind"]) for d in listed] == [
        ("front", "Front", "both", "both"),
        ("side", "Side exit", "exit", "poster"),
    ]

    png = tmp_path / "side.png"
    made = run(*doors, "poster", *login, "--door", "side", "--out", str(png))
    assert made.exit_code == 0, made.output
    with Image.open(png) as img:
        assert [c.text for c in zxingcpp.read_barcodes(img)] == [listed[1]["uri"]]
    # The registry has no public_url: the address is the one it serves at.
    assert listed[1]["uri"] == door_address(server.url, facility, "side")
    pdf = tmp_path / "front.pdf"
    assert run(*doors, "poster", *login, "--door", "front", "--out", str(pdf)).exit_code == 0
    assert pdf.read_bytes().startswith(b"%PDF-")

    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the password at all", encoding="utf-8")
    refused = run(
        *doors,
        "add",
        *login[:-1],
        str(wrong),
        "--door",
        "back",
        "--name",
        "Back",
        "--direction",
        "entrance",
    )
    assert refused.exit_code == 1 and "401" in refused.output
    assert len(server.api("GET", f"/facilities/{facility}/doors")["doors"]) == 2
