"""A node's bundle: everything a blank Raspberry Pi needs to become a door node.

::

    <node>/node.toml           the node's configuration (no secret in it)
    <node>/mqtt-password       its MQTT password              (0600)
    <node>/node-key.pem        its Ed25519 private key        (0600)
    <node>/node-key.pub        the public half
    <node>/trust.json          the registry keys it believes, when given
    <node>/list-keys.json      the registry's list keys it pins, when given: the lists the
                               hub relays are believed only when one of them signed them
    <node>/broker-ca.pem       the facility CA it verifies the broker with (TLS)
    <node>/pintu-node.service  the systemd unit
    <node>/install.sh          run as root on the Pi: venv, Pintu, files, service
    <node>/*.whl               a Pintu wheel to install, when given

and the same as ``<node>.tar.gz``. The bundle holds the node's secrets: the directory is
0700 and the archive 0600; copy it to the Pi over SSH and delete it afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from provisioning.errors import BundleError

logger = logging.getLogger(__name__)

UNIT = "pintu-node.service"
STATE_DIR = "/var/lib/pintu-node"
BROKER_CA = "broker-ca.pem"
LIST_KEYS = "list-keys.json"
INSTALLED_CA = f"/etc/pintu/{BROKER_CA}"
SOURCE_UNIT = Path(__file__).resolve().parents[1] / "systemd" / UNIT


@dataclass(frozen=True)
class NodeSettings:
    """What goes into one node's node.toml."""

    node_id: str
    facility_id: str
    door_id: str
    direction: str
    broker_host: str
    broker_port: int
    hub_url: str | None = None
    tls_ca_file: str | None = None


def _q(value: object) -> str:
    # JSON strings, numbers and booleans are valid TOML values.
    return json.dumps(value)


def render_node_toml(node: NodeSettings) -> str:
    hub = f" (hub: {node.hub_url})" if node.hub_url else ""
    lines = [
        f"# Door node {node.node_id} at {node.facility_id}/{node.door_id}{hub}.",
        "# Written by `pintu provision node enroll`; check it with",
        "# `pintu node check-config --config /etc/pintu/node.toml`. No secret lives here: the",
        "# MQTT password comes from systemd's credentials directory (LoadCredential=).",
        f"node_id = {_q(node.node_id)}",
        f"facility_id = {_q(node.facility_id)}",
        f"door_id = {_q(node.door_id)}",
        f"direction = {_q(node.direction)}            # entry | exit | both",
        f"state_dir = {_q(STATE_DIR)}   # StateDirectory=pintu-node",
        "",
        "[source]",
        'kind = "picamera2"             # the camera module, lores YUV420 stream',
        "width = 640",
        "height = 480",
        "fps = 15.0",
        "",
        "[decoder]",
        'backend = "escalating"',
        "",
        "# The reference wiring (docs/provisioning.md). Change the pins to match the board.",
        "[pins]",
        'pin_factory = "auto"',
        "",
        "[pins.leds]",
        'kind = "three"',
        "red = 17",
        "yellow = 27",
        "green = 22",
        "active_high = true",
        "",
        "[pins.buzzer]",
        "pin = 18",
        "active_high = true",
        "",
        "[pins.relay]",
        "pin = 5",
        "active_high = false            # most relay boards switch on a low input",
        "pulse_ms = 3000",
        'wiring = "fail_secure"         # electric strike: locked without power',
        "",
        "# Sensors only when wired: one configured but not wired reads as nobody passing.",
        "# [pins.rotation_sensor]",
        "# pin = 25",
        "# pull_up = true",
        "# bounce_ms = 20",
        "",
        "[mqtt]",
        f"host = {_q(node.broker_host)}",
        f"port = {node.broker_port}",
        f"username = {_q(node.node_id)}",
        "# No password_file: the password is read from $CREDENTIALS_DIRECTORY/mqtt-password,",
        "# which the unit's LoadCredential=mqtt-password:/etc/pintu/mqtt-password fills.",
    ]
    if node.tls_ca_file:
        lines.append(f"tls_ca_file = {_q(node.tls_ca_file)}")
    return "\n".join(lines) + "\n"


INSTALL_SH = """#!/bin/sh
# Installs door node @NODE@ (@WHERE@) on this Raspberry Pi.
# Run it as root from the unpacked bundle:
#
#   sudo ./install.sh [PINTU_SOURCE]
#
# PINTU_SOURCE is what pip installs Pintu from: a wheel, a directory holding Pintu's
# source, or a URL such as git+https://... Default: @DEFAULT_SOURCE@
set -eu

here=$(cd "$(dirname "$0")" && pwd)
source=${1:-${PINTU_SOURCE:-@DEFAULT_SOURCE_SH@}}
prefix=${PINTU_PREFIX:-/opt/pintu}
etc=${PINTU_ETC:-/etc/pintu}
unit_dir=${PINTU_UNIT_DIR:-/etc/systemd/system}
state=${PINTU_STATE_DIR:-@STATE_DIR@}
user=${PINTU_USER:-pintu}
group=${PINTU_GROUP:-$user}

step() { echo "==> $*"; }
fail() { echo "install.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run me as root: sudo ./install.sh"
# 32-bit Raspberry Pi OS (armhf): zxing-cpp, numpy and Pillow publish no wheels for it,
# and building them on a Pi takes hours when it works at all.
[ "$(getconf LONG_BIT 2>/dev/null || echo 64)" = 64 ] || fail "this is a 32-bit system: \
a door node needs Raspberry Pi OS Lite (64-bit); write that to the card and start again"
[ -n "$source" ] || fail "say where to install Pintu from, e.g. sudo ./install.sh ./pintu.whl"

case "$source" in
  *://*) requirement="pintu[node] @ $source" ;;
  *)
    case "$source" in /*) ;; *) source="$here/$source" ;; esac
    [ -e "$source" ] || fail "no such file or directory: $source"
    requirement="$source[node]"
    ;;
esac

if [ -z "${PINTU_SKIP_APT:-}" ] && command -v apt-get >/dev/null 2>&1; then
  step "system packages (picamera2, numpy and lgpio come from Raspberry Pi OS)"
  apt-get install -y --no-install-recommends python3-venv python3-picamera2 python3-lgpio libzbar0
fi

step "user $user"
if ! getent passwd "$user" >/dev/null; then
  useradd --system --user-group --no-create-home --home-dir "$state" \\
    --shell /usr/sbin/nologin "$user"
fi

step "Pintu in $prefix/.venv (this takes a few minutes on a Pi)"
# --system-site-packages: picamera2 is an apt package, not on PyPI.
python3 -m venv --system-site-packages "$prefix/.venv"
# numpy<2: the venv sees Raspberry Pi OS's picamera2 and simplejpeg, which are built
# against its numpy 1.x; a numpy 2 from PyPI in the venv would break importing them.
"$prefix/.venv/bin/pip" install --quiet --upgrade "$requirement" "numpy<2"

step "configuration in $etc"
install -d -m 0755 "$etc"
install -m 0644 "$here/node.toml" "$etc/node.toml"
install -m 0600 "$here/mqtt-password" "$etc/mqtt-password"
install -m 0600 "$here/node-key.pem" "$etc/node-key.pem"
install -m 0644 "$here/node-key.pub" "$etc/node-key.pub"
if [ -f "$here/broker-ca.pem" ]; then
  install -m 0644 "$here/broker-ca.pem" "$etc/broker-ca.pem"
fi
install -d -m 0750 -o "$user" -g "$group" "$state"
if [ -f "$here/trust.json" ]; then
  install -m 0644 -o "$user" -g "$group" "$here/trust.json" "$state/trust.json"
fi
if [ -f "$here/list-keys.json" ]; then
  install -m 0644 -o "$user" -g "$group" "$here/list-keys.json" "$state/list-keys.json"
fi
"$prefix/.venv/bin/pintu" node check-config --config "$etc/node.toml"

boot_config=${PINTU_BOOT_CONFIG:-/boot/firmware/config.txt}
if [ -f "$boot_config" ] && ! grep -q '^dtparam=strict_gpiod' "$boot_config"; then
  # A node that dies (crash, SIGKILL, watchdog) releases the relay line without locking
  # it; by default the kernel keeps driving its last level, open if it died mid-pulse.
  # strict_gpiod returns released lines to inputs, so the pull decides: locked.
  step "dtparam=strict_gpiod in $boot_config (takes effect at the next reboot)"
  printf '\n# Pintu door node: released GPIO lines return to inputs.\ndtparam=strict_gpiod\n' \
    >> "$boot_config"
fi

step "service pintu-node"
install -m 0644 "$here/@UNIT@" "$unit_dir/@UNIT@"
systemctl daemon-reload
systemctl enable --now @UNIT@
step "done: follow it with  journalctl -u @UNIT@ -f"
"""


def render_install_sh(node: NodeSettings, default_source: str) -> str:
    values = {
        "@NODE@": node.node_id,
        "@WHERE@": f"{node.facility_id}/{node.door_id}",
        "@DEFAULT_SOURCE@": default_source or "none, give one",
        "@DEFAULT_SOURCE_SH@": shlex.quote(default_source) if default_source else '""',
        "@STATE_DIR@": STATE_DIR,
        "@UNIT@": UNIT,
    }
    text = INSTALL_SH
    for key, value in values.items():
        text = text.replace(key, value)
    return text


@dataclass(frozen=True)
class BundleFiles:
    """The node's secrets and extras, as they go into its bundle."""

    node_toml: str
    mqtt_password: str
    private_key_pem: bytes
    public_key_pem: bytes
    trust: Path | None = None
    list_keys: Path | None = None
    broker_ca: Path | None = None
    wheel: Path | None = None
    pintu_source: str = ""
    unit: Path | None = None


def write_bundle(staging: Path, node: NodeSettings, files: BundleFiles) -> None:
    """Write the bundle's files into ``staging`` (created 0700, must not exist yet)."""
    unit = files.unit or SOURCE_UNIT
    try:
        staging.mkdir(mode=0o700, parents=False)
        _write(staging / "node.toml", files.node_toml.encode(), 0o644)
        _write(staging / "mqtt-password", (files.mqtt_password + "\n").encode(), 0o600)
        _write(staging / "node-key.pem", files.private_key_pem, 0o600)
        _write(staging / "node-key.pub", files.public_key_pem, 0o644)
        if files.trust is not None:
            shutil.copyfile(files.trust, staging / "trust.json")
        if files.list_keys is not None:
            shutil.copyfile(files.list_keys, staging / LIST_KEYS)
        if files.broker_ca is not None:
            shutil.copyfile(files.broker_ca, staging / BROKER_CA)
        source = files.pintu_source
        if files.wheel is not None:
            shutil.copyfile(files.wheel, staging / files.wheel.name)
            source = source or files.wheel.name
        shutil.copyfile(unit, staging / UNIT)
        _write(staging / "install.sh", render_install_sh(node, source).encode(), 0o755)
    except OSError as err:
        raise BundleError(f"cannot write the bundle in {staging}: {err}") from err


def archive(bundle: Path, target: Path) -> Path:
    """``bundle`` as a .tar.gz at ``target`` (mode 0600), its files under ``<bundle name>/``."""

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        # The technician's own uid means nothing on the Pi.
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            tar.add(bundle, arcname=bundle.name, filter=owned_by_root)
    except (OSError, tarfile.TarError) as err:
        raise BundleError(f"cannot write {target}: {err}") from err
    return target


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, mode)  # exactly this mode, whatever the umask
    with os.fdopen(fd, "wb") as out:
        out.write(data)
