"""The unit files in systemd/: systemd itself finds nothing wrong with them, and they keep
the properties the services rely on (notify, watchdog, hardening, credentials)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[1] / "systemd"
NAMES = ["pintu-node.service", "pintu-hub.service", "pintu-registry.service"]
EXEC = "/opt/pintu/.venv/bin/pintu"
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze is missing: install the `systemd` package (make install does)",
)


def directives(name: str) -> dict[str, list[str]]:
    """``Key`` -> every value it has in the unit (a key may repeat), comments left out."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def unit_copy(name: str, tmp_path: Path) -> Path:
    """The unit with its ExecStart pointing at a stand-in program.

    `systemd-analyze verify` checks that the program exists and is executable; on a
    development machine /opt/pintu does not exist, so the copy points at one that does.
    Everything else in the unit is checked exactly as shipped.
    """
    program = tmp_path / "bin" / "pintu"
    program.parent.mkdir(exist_ok=True)
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    copy = tmp_path / name
    copy.write_text((UNITS / name).read_text().replace(EXEC, str(program)))
    return copy


@needs_analyze
@pytest.mark.parametrize("name", NAMES)
def test_systemd_analyze_verify_finds_nothing(name: str, tmp_path: Path) -> None:
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "verify", str(unit_copy(name, tmp_path))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", output


@needs_analyze
@pytest.mark.parametrize("name", NAMES)
def test_exposure_is_low(name: str, tmp_path: Path) -> None:
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(unit_copy(name, tmp_path))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    # The node needs its devices and a fixed user; the others are tighter still.
    assert float(match.group(1)) <= 2.5, result.stdout


@pytest.mark.parametrize("name", NAMES)
def test_every_service_notifies_and_is_hardened(name: str) -> None:
    unit = directives(name)
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "Restart": ["on-failure"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "DevicePolicy": ["closed"],
        "CapabilityBoundingSet": [""],
    }
    for key, values in expected.items():
        assert unit.get(key) == values, f"{name}: {key}={unit.get(key)}"
    assert "PYTHONUNBUFFERED=1" in unit["Environment"]
    assert unit["ExecStart"][0].startswith(f"{EXEC} ")
    assert "--config /etc/pintu/" in unit["ExecStart"][0]
    assert re.fullmatch(r"\d+s", unit["WatchdogSec"][0])
    assert unit["StateDirectory"] == [name.removesuffix(".service")]
    assert "ReadWritePaths" not in unit  # StateDirectory= is all they write to
    assert "DynamicUser" in unit or "User" in unit


def test_the_node_unit_reaches_its_hardware_and_nothing_else() -> None:
    unit = directives("pintu-node.service")
    assert unit["ExecStart"] == [f"{EXEC} node run --config /etc/pintu/node.toml"]
    assert unit["WatchdogSec"] == ["30s"]
    assert unit["SupplementaryGroups"] == ["gpio video"]
    assert unit["LoadCredential"][0] == "mqtt-password:/etc/pintu/mqtt-password"
    assert sorted(unit["DeviceAllow"]) == [
        "char-dma_heap rw",
        "char-gpiochip rw",
        "char-media rw",
        "char-video4linux rw",
    ]
    assert unit["StateDirectory"] == ["pintu-node"]
    assert "PrivateDevices" not in unit  # it would hide the camera and the GPIO chips


def test_the_node_works_in_a_directory_it_may_write() -> None:
    """lgpio creates its notification pipe in the working directory when it is imported:
    under ProtectSystem=strict, a node left in / cannot import it and never gets its GPIO."""
    unit = directives("pintu-node.service")
    assert unit["RuntimeDirectory"] == ["pintu-node"]
    # %t is /run for a system service: the directory RuntimeDirectory= creates, owned by
    # the service's user and writable under ProtectSystem=strict.
    assert unit["WorkingDirectory"] == ["%t/pintu-node"]
    assert "LG_WD=%t/pintu-node" in unit["Environment"]


def test_the_hub_unit_gets_its_mqtt_password_and_registry_token_as_credentials() -> None:
    unit = directives("pintu-hub.service")
    assert unit["LoadCredential"] == [
        "mqtt-password:/etc/pintu/hub-mqtt-password",
        # The dynamic user cannot read /etc/pintu: the registry token comes the same way.
        "registry-token:/etc/pintu/registry-token",
    ]
    assert unit["ExecStart"] == [f"{EXEC} hub serve --config /etc/pintu/hub.toml"]
    registry = directives("pintu-registry.service")
    assert registry["ExecStart"] == [f"{EXEC} registry serve --config /etc/pintu/registry.toml"]
