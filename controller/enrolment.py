"""A door node with no configuration: it waits for a provisioning QR and enrols itself.

``pintu node run --config FILE`` where FILE does not exist ends up here. Only the lamp
works: the relay is claimed locked and never armed, and the lamp blinks yellow slowly.
The node scans its frame source (the camera of the reference build unless told otherwise)
for a provisioning QR (``protocol.enrolment``). Shown one, it asks the hub named in it for
its sealed bundle, once, opens it with the QR's token and writes

    FILE                     node.toml, with state_dir and mqtt.password_file set here
    <FILE's dir>/mqtt-password   (0600)
    <FILE's dir>/node-key.pem    (0600)
    <state_dir>/trust.json       when the bundle has one
    <state_dir>/list-keys.json   the registry's list keys it pins, when the bundle has them

node.toml last, by an atomic rename, so a node cut off half way is still unprovisioned.
The caller then starts the node as usual. A hub that refuses (a used, expired or unknown
token) or cannot be reached gets a brief red, a log line, and the node keeps waiting.
Passes shown meanwhile are ignored with a log line: the node has no trust list to judge
them by and no door to open.

**Bound to its facility.** A node that knows its facility's CA (``facility_ca``: given it
when its card was prepared, or the ``broker-ca.pem`` an earlier enrolment left beside its
configuration) takes only a code whose pin is that CA's, and only a bundle that carries
that CA: a code for another facility, or one with no pin, is refused before any hub is
asked for anything, so a QR held up by a stranger cannot take the door to a broker of
theirs. A node that knows none takes the first code, logs the facility pin it now belongs
to (the technician compares it with what `pintu provision node enroll` printed) and keeps
the CA, so a later code must match it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from controller.config import NodeConfig, parse_config
from controller.errors import ConfigError, ControllerError
from controller.scanner import Deduper
from controller.uplink import CREDENTIAL_NAME
from firmware.camera import PiCameraSourceConfig, SourceConfig, open_source
from firmware.decoder import make_decoder
from firmware.errors import SourceError
from firmware.frames import FrameSource
from firmware.gpio import Devices
from firmware.pins import PinMap
from protocol.enrolment import (
    EnrolmentCodeError,
    ProvisioningCode,
    SealedBundle,
    decode_sealed,
    facility_pin,
    is_provisioning_text,
    open_sealed,
)
from protocol.errors import ProtocolError
from protocol.signals import Signal
from protocol.signedlist import ListKeys
from runtime.notify import Notifier

logger = logging.getLogger(__name__)

KEY_FILE = "node-key.pem"
BROKER_CA_FILE = "broker-ca.pem"


class EnrolmentFailed(ControllerError):
    """A provisioning QR did not give this node a configuration (the reason is the text)."""


@dataclass(frozen=True)
class WaitSettings:
    """How an unprovisioned node waits: its pins, frame source and decoder."""

    pins: PinMap
    source: SourceConfig
    decoder: str = "zxingcpp"
    cooldown_s: float = 3.0  # the same QR held up is tried once, again after this
    refused_s: float = 2.0  # how long a refusal shows red
    http_timeout_s: float = 10.0
    restart_source_after_s: float = 5.0

    @classmethod
    def default(cls) -> WaitSettings:
        """The reference build: the wiring of ``PinMap.default()`` and the Pi camera."""
        return cls(pins=PinMap.default(), source=PiCameraSourceConfig())


class Enrolment:
    """Waits for a provisioning QR and installs what it unlocks; see the module's doc."""

    def __init__(
        self,
        config_path: Path,
        state_dir: Path,
        settings: WaitSettings | None = None,
        *,
        source: FrameSource | None = None,
        notifier: Notifier | None = None,
        facility_ca: Path | None = None,
    ) -> None:
        self.config_path = config_path
        self.state_dir = state_dir
        self.settings = settings or WaitSettings.default()
        self.pin = self._pin_of(facility_ca)
        self._given_source = source
        self.notifier = notifier or Notifier()
        self.deduper = Deduper(self.settings.cooldown_s)
        self.attempts = 0
        self.refusals: list[str] = []
        self._devices: Devices | None = None
        self._red_until: float | None = None

    def _pin_of(self, facility_ca: Path | None) -> str | None:
        """The facility pin this node is bound to: its given CA's, else a kept one's."""
        kept = self.config_path.parent / BROKER_CA_FILE
        path = facility_ca if facility_ca is not None else kept
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            if facility_ca is not None:
                raise ConfigError(f"the facility CA {facility_ca} does not exist") from None
            return None
        except OSError as err:
            raise ConfigError(f"cannot read the facility CA {path}: {err}") from err
        try:
            pin = facility_pin(pem)
        except EnrolmentCodeError as err:
            raise ConfigError(f"{path} is not the facility CA's certificate: {err}") from err
        logger.info("bound to the facility whose CA has pin %s (%s)", pin, path)
        return pin

    @property
    def signal(self) -> Signal:
        """What the lamp shows now (OFF before waiting starts and after it ends)."""
        devices = self._devices
        return devices.indicator.signal if devices is not None else Signal.OFF

    # -- the loop ------------------------------------------------------------------------

    def wait(self, stop: threading.Event) -> NodeConfig | None:
        """Wait until provisioned (the new configuration) or ``stop`` is set (None)."""
        self._devices = Devices.build(self.settings.pins)  # the relay claimed locked, unarmed
        try:
            self._show(Signal.PROVISIONING)
            self.notifier.ready("no configuration: show me a provisioning QR")
            logger.info("no configuration at %s: waiting for a provisioning QR", self.config_path)
            decoder = make_decoder(self.settings.decoder)
            while not stop.is_set():
                source = self._given_source
                try:
                    if source is None:
                        source = open_source(self.settings.source)
                    for frame in source:
                        if stop.is_set():
                            return None
                        self.notifier.pet()
                        self._back_to_blink()
                        for text in decoder.decode(frame.pixels):
                            if not self.deduper.fresh(text, frame.ts):
                                continue
                            config = self.consider(text)
                            if config is not None:
                                return config
                    logger.error("the frame source ended while waiting for a provisioning QR")
                    return None
                except SourceError as err:
                    logger.error("camera failed while waiting for a provisioning QR: %s", err)
                    stop.wait(self.settings.restart_source_after_s)
                finally:
                    if source is not None and source is not self._given_source:
                        source.close()
            return None
        finally:
            devices, self._devices = self._devices, None
            devices.close()

    def _show(self, signal: Signal, duration_s: float | None = None) -> None:
        if self._devices is not None:
            self._devices.indicator.show(signal, duration_s)

    def _back_to_blink(self) -> None:
        if self._red_until is not None and time.monotonic() >= self._red_until:
            self._red_until = None
            self._show(Signal.PROVISIONING)

    def _refused(self, reason: str) -> None:
        self.refusals.append(reason)
        logger.warning("provisioning QR refused: %s; still waiting", reason)
        self._show(Signal.RED)
        self._red_until = time.monotonic() + self.settings.refused_s

    # -- one code ------------------------------------------------------------------------

    def consider(self, text: str) -> NodeConfig | None:
        """Try one decoded text; the new configuration if it provisioned the node."""
        if not is_provisioning_text(text):
            logger.info("ignored a code that is not a provisioning QR: this node is not enrolled")
            return None
        self.attempts += 1
        try:
            code = ProvisioningCode.parse(text)
            self._check_pin(code)
            bundle = self._fetch(code)
            self._check_bundle(code, bundle)
            config = self.install(code, bundle)
        except (EnrolmentCodeError, EnrolmentFailed, ConfigError) as err:
            self._refused(str(err))
            return None
        logger.info(
            "provisioned as node %s at %s/%s by %s",
            config.node_id,
            config.facility_id,
            config.door_id,
            code.hub_url,
        )
        return config

    def _check_pin(self, code: ProvisioningCode) -> None:
        """Refuse a code for another facility before any hub is asked for anything."""
        if self.pin is None:
            return
        if code.pin is None:
            raise EnrolmentFailed(
                f"this node belongs to the facility with pin {self.pin}, and the code names "
                "no facility"
            )
        if code.pin != self.pin:
            raise EnrolmentFailed(
                f"the code is for the facility with pin {code.pin}; this node belongs to "
                f"the one with pin {self.pin}"
            )

    def _check_bundle(self, code: ProvisioningCode, bundle: SealedBundle) -> None:
        """The bundle's CA must be the one the node (or else the code) names."""
        expected = self.pin or code.pin
        got = facility_pin(bundle.broker_ca_pem) if bundle.broker_ca_pem is not None else None
        if expected is not None and got != expected:
            raise EnrolmentFailed(
                f"the bundle's facility CA is not the one with pin {expected}: refused"
            )
        if self.pin is None and got is not None:
            logger.warning(
                "this node knew no facility: it now belongs to the facility with pin %s; "
                "compare it with the pin the enrolment printed",
                got,
            )

    def _fetch(self, code: ProvisioningCode) -> SealedBundle:
        url = f"{code.hub_url}/api/v1/enrolments/{code.lookup_id}/claim"
        try:
            response = httpx.post(url, timeout=self.settings.http_timeout_s)
        except httpx.HTTPError as err:
            raise EnrolmentFailed(f"the hub at {code.hub_url} cannot be reached: {err}") from err
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            said = body if isinstance(body, dict) else {}
            error = f" {said['error']}" if said.get("error") else ""
            detail = said.get("detail") or response.reason_phrase
            raise EnrolmentFailed(f"the hub answered {response.status_code}{error}: {detail}")
        sealed = decode_sealed(str(body.get("sealed", "")))
        return SealedBundle.loads(open_sealed(code.token, code.node_id, sealed))

    # -- writing the files ---------------------------------------------------------------

    def install(self, code: ProvisioningCode, bundle: SealedBundle) -> NodeConfig:
        """Write the bundle's files; the configuration as the node will read it."""
        config_dir = self.config_path.parent
        password = config_dir / CREDENTIAL_NAME
        try:
            doc = tomllib.loads(bundle.node_toml)
        except tomllib.TOMLDecodeError as err:
            raise EnrolmentFailed(f"the bundle's node.toml is not TOML: {err}") from err
        doc["state_dir"] = str(self.state_dir)
        mqtt = doc.setdefault("mqtt", {})
        if not isinstance(mqtt, dict):
            raise EnrolmentFailed("the bundle's node.toml has no [mqtt] table")
        mqtt["password_file"] = str(password)
        broker_ca = config_dir / BROKER_CA_FILE
        if bundle.broker_ca_pem is not None:
            # The facility CA, pinned now: from here on the node talks only to a broker
            # with a certificate from it.
            mqtt["tls_ca_file"] = str(broker_ca)
        if bundle.list_keys_json is not None:
            try:
                pinned = ListKeys.loads(bundle.list_keys_json, "the bundle's list keys")
            except ProtocolError as err:
                raise EnrolmentFailed(str(err)) from err
            logger.info("pinning list key %s from the bundle", ", ".join(pinned.kids))
        text = _HEADER + tomli_w.dumps(doc)
        config = parse_config(text, str(self.config_path))
        if config.node_id != code.node_id:
            raise EnrolmentFailed(
                f"the bundle is for node {config.node_id!r}, the QR for {code.node_id!r}"
            )
        try:
            config_dir.mkdir(parents=True, exist_ok=True)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            _write(password, (bundle.mqtt_password + "\n").encode(), 0o600)
            _write(config_dir / KEY_FILE, bundle.node_key_pem.encode(), 0o600)
            if bundle.broker_ca_pem is not None:
                _write(broker_ca, bundle.broker_ca_pem.encode(), 0o644)
            if bundle.trust_json is not None:
                _write(config.path(config.trust_list), bundle.trust_json.encode(), 0o644)
            if bundle.list_keys_json is not None:
                # Pinned here, from the sealed bundle: the lists the hub relays later are
                # believed only when one of these keys signed them.
                _write(config.path(config.list_keys), bundle.list_keys_json.encode(), 0o644)
            _write(self.config_path, text.encode(), 0o644)
        except OSError as err:
            raise EnrolmentFailed(f"cannot write the node's files: {err}") from err
        return config


_HEADER = (
    "# Written by the door node from its provisioning QR (`pintu provision node enroll\n"
    "# --qr`); check it with `pintu node check-config --config <this file>`. The MQTT\n"
    "# password is in mqtt.password_file, not here.\n"
)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole or not at all, with exactly ``mode`` whatever the umask."""
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
