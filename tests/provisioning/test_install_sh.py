"""The bundle's install.sh, run against a stand-in root: the right files land in the right
places with the right modes, and the service is enabled. The commands that would change
the machine (apt, useradd, systemctl, the venv) are stubs that log how they were called."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.signedlist import ListKeys
from protocol.trust import SigningKey, TrustList
from provisioning.enroll import EnrolRequest, enroll

STUBS = {
    "id": "echo 0\n",
    "getent": 'echo "getent $*" >> "$LOG"; exit 2\n',
    "useradd": 'echo "useradd $*" >> "$LOG"\n',
    "systemctl": 'echo "systemctl $*" >> "$LOG"\n',
    "apt-get": 'echo "apt-get $*" >> "$LOG"\n',
    # `python3 -m venv ... DIR`: a venv whose pip logs and whose pintu is the real one.
    "python3": """echo "python3 $*" >> "$LOG"
for last; do :; done
mkdir -p "$last/bin"
printf '#!/bin/sh\\necho "pip $*" >> "$LOG"\\n' > "$last/bin/pip"
printf '#!/bin/sh\\nexec "$REAL_PINTU" "$@"\\n' > "$last/bin/pintu"
chmod +x "$last/bin/pip" "$last/bin/pintu"
""",
}


@pytest.fixture
def stubs(tmp_path: Path) -> Path:
    folder = tmp_path / "stubs"
    folder.mkdir()
    for name, body in STUBS.items():
        path = folder / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    return folder


def test_install_sh_puts_everything_in_place(
    broker_dir: tuple[Path, str], tmp_path: Path, stubs: Path
) -> None:
    directory, _ = broker_dir
    trust = tmp_path / "trust.json"
    TrustList.of([SigningKey.generate().trusted()], 1_700_000_000).save(trust)
    list_keys = tmp_path / "list-keys.json"
    ListKeys.of(1, [SigningKey.generate().public_key], 1_700_000_000).save(list_keys)
    wheel = tmp_path / "pintu-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    enrolment = enroll(
        directory,
        EnrolRequest(
            "mall-a", "main-in", "entry", "hub.local", trust=trust, list_keys=list_keys, wheel=wheel
        ),
        tmp_path / "out",
    )
    bundle = enrolment.bundle_dir
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)  # there on any systemd machine
    log = tmp_path / "log"
    env = {
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "LOG": str(log),
        "REAL_PINTU": str(Path(sys.executable).with_name("pintu")),
        "PINTU_PREFIX": str(root / "opt/pintu"),
        "PINTU_ETC": str(root / "etc/pintu"),
        "PINTU_UNIT_DIR": str(root / "etc/systemd/system"),
        "PINTU_STATE_DIR": str(root / "var/lib/pintu-node"),
        "PINTU_USER": pwd.getpwuid(os.geteuid()).pw_name,
        "PINTU_GROUP": grp.getgrgid(os.getegid()).gr_name,
        "PINTU_BOOT_CONFIG": str(root / "boot/firmware/config.txt"),
    }
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/config.txt").write_text("[all]\ndtparam=audio=on\n")
    result = subprocess.run(
        ["sh", str(bundle / "install.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "ok: node main-in-1 at mall-a/main-in (entry)" in result.stdout
    calls = log.read_text().splitlines()
    assert calls[0].startswith("apt-get install -y --no-install-recommends python3-venv")
    assert "python3-picamera2" in calls[0]
    assert any(c.startswith("useradd --system --user-group") for c in calls), calls
    assert f"python3 -m venv --system-site-packages {root}/opt/pintu/.venv" in calls
    # numpy stays below 2: the apt picamera2 and simplejpeg the venv sees are built on 1.x.
    assert f"pip install --quiet --upgrade {bundle}/{wheel.name}[node] numpy<2" in calls
    assert calls[-2:] == ["systemctl daemon-reload", "systemctl enable --now pintu-node.service"]

    def mode(relative: str) -> int:
        return stat.S_IMODE((root / relative).stat().st_mode)

    assert mode("etc/pintu/mqtt-password") == 0o600
    assert mode("etc/pintu/node-key.pem") == 0o600
    assert mode("etc/pintu/node.toml") == 0o644
    assert mode("var/lib/pintu-node") == 0o750
    assert (root / "etc/pintu/mqtt-password").read_bytes() == (
        bundle / "mqtt-password"
    ).read_bytes()
    assert (root / "var/lib/pintu-node/trust.json").read_bytes() == trust.read_bytes()
    assert (root / "var/lib/pintu-node/list-keys.json").read_bytes() == list_keys.read_bytes()
    unit = root / "etc/systemd/system/pintu-node.service"
    assert unit.read_bytes() == (bundle / "pintu-node.service").read_bytes()
    # A node that dies mid-pulse must not leave the relay line driven open.
    boot = (root / "boot/firmware/config.txt").read_text().splitlines()
    assert boot[:2] == ["[all]", "dtparam=audio=on"]
    assert boot.count("dtparam=strict_gpiod") == 1
    again = subprocess.run(
        ["sh", str(bundle / "install.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stderr
    boot = (root / "boot/firmware/config.txt").read_text().splitlines()
    assert boot.count("dtparam=strict_gpiod") == 1  # added once, not per install


def test_install_sh_without_a_source_says_what_to_give(
    broker_dir: tuple[Path, str], tmp_path: Path, stubs: Path
) -> None:
    directory, _ = broker_dir
    enrolment = enroll(
        directory, EnrolRequest("mall-a", "main-in", "entry", "hub.local"), tmp_path / "out"
    )
    env = {"PATH": f"{stubs}:{os.environ['PATH']}", "LOG": str(tmp_path / "log")}
    result = subprocess.run(
        ["sh", str(enrolment.bundle_dir / "install.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "say where to install Pintu from" in result.stderr
    assert not (tmp_path / "log").exists()  # nothing was touched


def test_install_sh_refuses_a_32_bit_system_before_touching_it(
    broker_dir: tuple[Path, str], tmp_path: Path, stubs: Path
) -> None:
    directory, _ = broker_dir
    enrolment = enroll(
        directory,
        EnrolRequest("mall-a", "main-in", "entry", "hub.local", pintu_source="git+https://x/y"),
        tmp_path / "out",
    )
    getconf = stubs / "getconf"
    getconf.write_text('#!/bin/sh\n[ "$1" = LONG_BIT ] && echo 32\n')  # armhf Raspberry Pi OS
    getconf.chmod(0o755)
    env = {"PATH": f"{stubs}:{os.environ['PATH']}", "LOG": str(tmp_path / "log")}
    result = subprocess.run(
        ["sh", str(enrolment.bundle_dir / "install.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "32-bit system" in result.stderr
    assert "Raspberry Pi OS Lite (64-bit)" in result.stderr
    assert not (tmp_path / "log").exists()  # no apt, no user, no venv


def test_install_sh_is_valid_sh(broker_dir: tuple[Path, str], tmp_path: Path) -> None:
    directory, _ = broker_dir
    enrolment = enroll(
        directory,
        EnrolRequest("mall-a", "main-in", "entry", "hub.local", pintu_source="git+https://x/y"),
        tmp_path / "out",
    )
    script = enrolment.bundle_dir / "install.sh"
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    assert "source=${1:-${PINTU_SOURCE:-git+https://x/y}}" in script.read_text()
