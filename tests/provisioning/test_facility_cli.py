"""``pintu provision facility``: a facility's registration against a real registry served
over HTTP on a free port (its clock moved by hand), driven as a PIC would from a terminal."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner, Result

from pintu.cli import cli
from provisioning.mosquitto import free_port
from registry import auth
from registry.config import parse_config
from registry.server import run
from registry.service import Registry
from runtime.listen import bind, url_of

T0 = 1795334400  # 2026-11-22T08:00:00Z
PASSWORD = "a long enough password"  # noqa: S105 - a test account's password


class Clock:
    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    registry: Registry
    url: str
    clock: Clock


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setattr(auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    clock = Clock()
    registry = Registry.open(parse_config("[web]\nport = 0\n", base=tmp_path), clock=clock)
    sock = bind("127.0.0.1", 0)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()

    async def main() -> None:
        task = asyncio.create_task(run(registry, sock, stop))
        ready.set()
        await task

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield Served(registry, url_of(sock), clock)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        loop.close()
        sock.close()
        registry.close()


def pintu(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["provision", "facility", *args], input=stdin)


def register(served: Served, email: str = "budi@pasar.example", *extra: str) -> Result:
    return pintu(
        "register", "--registry", served.url, "--name", "Pasar Baru Blok A",
        "--address", "Jl. Pasar Baru 1, Jakarta", "--type", "market", "--capacity", "300",
        "--pic-name", "Budi Santoso", "--pic-email", email, *extra,
    )  # fmt: skip


def error_line(result: Result) -> str:
    assert result.exit_code != 0, result.output
    # Besides the password prompts, if any: one line that says what went wrong.
    lines = [line for line in result.stderr.splitlines() if not line.endswith(": ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_register_activate_and_follow_the_state(served: Served, tmp_path: Path) -> None:
    created = register(served, "budi@pasar.example", "--json")
    assert created.exit_code == 0, created.output
    doc = json.loads(created.stdout)
    fid = doc["id"]
    assert doc["state"] == "requested" and fid.startswith("pasar-baru-blok-a-")
    assert "operator" in doc["next_step"]
    where = ("--registry", served.url, "--facility", fid)

    status = pintu("status", *where)
    assert status.exit_code == 0, status.output
    assert status.stdout.splitlines()[0] == f"facility {fid}: requested"
    assert "next: wait" in status.stdout
    # Activation before verification: the registry's reason, one line, exit 1.
    token_file = tmp_path / "token"
    token_file.write_text("ra_guess\n")
    early = pintu("activate", *where, "--token-file", str(token_file), stdin=f"{PASSWORD}\n" * 2)
    assert "409 conflict" in error_line(early) and "has to verify it first" in early.stderr

    verified = served.registry.verify_facility(fid, "operator")
    status = pintu("status", *where, "--json")
    assert json.loads(status.stdout)["state"] == "verified"
    assert "activate it before 2026-11-25T08:00:00Z" in json.loads(status.stdout)["next_step"]

    wrong = pintu("activate", *where, "--token", "ra_wrong", stdin=f"{PASSWORD}\n" * 2)
    assert "403 forbidden: this is not the facility's current activation token" in error_line(wrong)
    # The password is asked twice; two that differ are asked again, never taken.
    hub_token = tmp_path / "hub-token"
    typed = f"{PASSWORD}\nsomething else\n{PASSWORD}\n{PASSWORD}\n"
    token_file.write_text(verified.token + "\n")
    done = pintu(
        "activate", *where, "--token-file", str(token_file), "--hub-token-file", str(hub_token),
        stdin=typed,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert f"facility {fid}: active; PIC logs in as budi@pasar.example" in done.stdout
    assert stat.S_IMODE(hub_token.stat().st_mode) == 0o600
    assert hub_token.read_text().startswith("rh_") and "rh_" not in done.stdout
    assert served.registry.login("budi@pasar.example", PASSWORD).token

    status = pintu("status", *where)
    assert status.stdout.splitlines()[0] == f"facility {fid}: active"
    again = pintu("activate", *where, "--token-file", str(token_file), stdin=f"{PASSWORD}\n" * 2)
    assert "409 conflict" in error_line(again) and "was used" in again.stderr


def test_an_expired_token_is_refused_and_changes_nothing(served: Served, tmp_path: Path) -> None:
    fid = json.loads(register(served, "klinik@example.com", "--json").stdout)["id"]
    token = served.registry.verify_facility(fid, "operator").token
    served.clock.now += 73 * 3600  # tokens live 72 h
    where = ("--registry", served.url, "--facility", fid)
    status = json.loads(pintu("status", *where, "--json").stdout)
    assert status["state"] == "verified" and "expired" in status["next_step"]
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    late = pintu("activate", *where, "--token", token, "--password-file", str(password))
    line = error_line(late)
    assert "410" in line and "expired at 2026-11-25T08:00:00Z" in line
    assert json.loads(pintu("status", *where, "--json").stdout)["state"] == "verified"
    assert served.registry.store.get_account("klinik@example.com") is None


def test_bad_input_unknown_ids_and_no_registry_are_one_clear_line(served: Served) -> None:
    bad = register(served, "not-an-e-mail")
    assert "422" in error_line(bad) and "pic_email" in bad.stderr
    missing = pintu("status", "--registry", served.url, "--facility", "nowhere-000000")
    assert "404 not_found: no facility 'nowhere-000000'" in error_line(missing)
    gone = f"http://127.0.0.1:{free_port()}"
    unreachable = pintu("status", "--registry", gone, "--facility", "x")
    assert f"the registry at {gone} cannot be reached" in error_line(unreachable)
    not_a_url = pintu("status", "--registry", "registry.example.id", "--facility", "x")
    assert "must start with http://" in error_line(not_a_url)
    # The status route tells a stranger nothing about the facility or its PIC.
    fid = json.loads(register(served, "siti@example.com", "--json").stdout)["id"]
    shown = json.loads(
        pintu("status", "--registry", served.url, "--facility", fid, "--json").stdout
    )
    assert "siti" not in json.dumps(shown) and "Pasar" not in json.dumps(shown)


def test_an_empty_token_or_password_file_is_a_local_error(served: Served, tmp_path: Path) -> None:
    fid = json.loads(register(served, "apotek@example.com", "--json").stdout)["id"]
    served.registry.verify_facility(fid, "operator")
    where = ("--registry", served.url, "--facility", fid)
    empty = tmp_path / "activation-token"
    empty.write_text("\n")
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    # Nothing is sent: the file is named, not a registry's 422 about a field.
    no_token = pintu(
        "activate", *where, "--token-file", str(empty), "--password-file", str(password)
    )
    line = error_line(no_token)
    assert f"the activation token file {empty} is empty" in line and "422" not in line
    blank = pintu("activate", *where, "--token", " ", "--password-file", str(password))
    assert blank.exit_code == 2 and "--token is empty" in blank.stderr, blank.stderr
    empty_password = tmp_path / "empty-password"
    empty_password.write_text("")
    empty.write_text("ra_something\n")
    no_password = pintu(
        "activate", *where, "--token-file", str(empty), "--password-file", str(empty_password)
    )
    line = error_line(no_password)
    assert f"the password file {empty_password} is empty" in line and "422" not in line
    assert json.loads(pintu("status", *where, "--json").stdout)["state"] == "verified"


def test_a_request_with_several_problems_names_them_all(served: Served) -> None:
    bad = pintu(
        "register", "--registry", served.url, "--name", "Pasar Baru Blok A",
        "--address", "x" * 501, "--type", "market", "--capacity", "300",
        "--pic-name", "B" * 201, "--pic-email", "not-an-e-mail",
    )  # fmt: skip
    line = error_line(bad)
    assert "422" in line, line
    assert "address:" in line and "pic_name:" in line and "pic_email:" in line, line
    assert "more problems" not in line
