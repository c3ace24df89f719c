"""The hub's typed configuration (``hub.toml``).

Unknown keys and bad values are errors that name the key and, where it can be found, the
line; the hub refuses to start on any of them. Secrets never live here: passwords and keys
come from files, by preference from systemd's credentials directory.
"""

from __future__ import annotations

import hashlib
import math
import os
import ssl
from datetime import time
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import paho.mqtt.client as mqtt
from pydantic import Field, field_validator, model_validator

from hub.errors import ConfigError
from protocol.configtext import ConfigTextError, parse_model, read_text
from protocol.ids import Ident
from protocol.model import StrictModel
from protocol.policy import PolicyConfig
from runtime.listen import is_loopback as is_loopback

DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600


class Section(StrictModel):
    """A config section: unknown keys are rejected."""


class MqttConfig(Section):
    host: str = Field("127.0.0.1", min_length=1, description="The MQTT broker's host name.")
    port: int = Field(1883, ge=1, le=65535, description="The MQTT broker's port.")
    username: str | None = Field(None, description="MQTT user name; none for anonymous.")
    password_file: Path | None = Field(
        None,
        description="File holding the MQTT password. A relative name is looked up in "
        "$CREDENTIALS_DIRECTORY (systemd LoadCredential=) when set.",
    )
    client_id: str = Field(
        "pintu-hub",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
        description="MQTT client id. It names the persistent session that keeps events "
        "queued while the hub is down, so it must stay the same across restarts and differ "
        "between hub workers.",
    )
    session_expiry_s: int = Field(
        DEFAULT_SESSION_EXPIRY_S,
        ge=0,
        le=0xFFFFFFFF,
        description="How long the broker keeps the hub's session (and queues events for it) "
        "while the hub is away.",
    )
    share_group: Ident = Field(
        "pintu-hub",
        description="Shared subscription group: hub workers in one group split the events.",
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive interval.")
    facility_logins: bool = Field(
        True,
        description="Log each facility's small presence connection in as "
        "<username>.<facility> with the hub's password, as `pintu provision` sets the broker "
        "up: it takes a login's user name as its client id, so each connection needs one.",
    )
    tls_ca_file: Path | None = Field(
        None,
        description="The facility CA's certificate (PEM) to verify the broker with; enables TLS.",
    )

    def password(self) -> str | None:
        return read_secret(self.password_file) if self.password_file else None

    def events_group(self, password: str | None) -> str:
        """The shared-subscription group the hub's workers split the events in.

        With a password the group's name carries a digest of it: the broker lets any client
        join any group, and a door that joined the hub's would be dealt a share of the events
        (dropped by its ACL, so delayed until resent). Every worker logs in with the same
        password and so joins the same group; no door can name it.
        """
        if password is None:
            return self.share_group
        digest = hashlib.sha256(f"pintu-share\0{self.share_group}\0{password}".encode())
        return f"{self.share_group}-{digest.hexdigest()[:20]}"

    def apply_tls(self, client: mqtt.Client) -> None:
        """Make ``client`` verify the broker against ``tls_ca_file``, when one is set."""
        if self.tls_ca_file is None:
            return
        if not self.tls_ca_file.is_file():
            raise ConfigError(f"mqtt.tls_ca_file {self.tls_ca_file} is not a readable file")
        try:
            client.tls_set(ca_certs=str(self.tls_ca_file))
        except (OSError, ssl.SSLError, ValueError) as err:
            raise ConfigError(f"mqtt.tls_ca_file {self.tls_ca_file}: {err}") from err

    def login_for(self, facility_id: str, *, presence: bool) -> str | None:
        """The user name of a connection: the hub's, or a facility's presence login."""
        if self.username and presence and self.facility_logins:
            return f"{self.username}.{facility_id}"
        return self.username


class SqliteStoreConfig(Section):
    backend: Literal["sqlite"] = Field(description="SQLite, one file on this machine.")
    path: Path = Field(
        description="The database file (created with its folder if missing); a relative "
        "name is taken from the config file's folder."
    )


class PostgresStoreConfig(Section):
    backend: Literal["postgresql"] = Field(
        description="PostgreSQL, for several hub workers (not supported yet)."
    )
    dsn: str = Field(description="libpq connection string without a password (use a .pgpass file).")


StoreConfig = Annotated[SqliteStoreConfig | PostgresStoreConfig, Field(discriminator="backend")]


class WebConfig(Section):
    host: str = Field("127.0.0.1", description="Address the dashboard and API listen on.")
    port: int = Field(8080, ge=1, le=65535, description="Port the dashboard and API listen on.")
    secret_key_file: Path | None = Field(
        None,
        description="File holding the key that signs login sessions; relative names are "
        "looked up in $CREDENTIALS_DIRECTORY when set. Created (mode 0600) on the first start "
        "if missing; without it, a new key each start logs everyone out.",
    )
    session_max_age_s: int = Field(
        12 * 3600,
        ge=300,
        le=30 * 86400,
        description="A login lasts this long (one shift, by default), however active.",
    )
    secure_cookies: bool | None = Field(
        None,
        description="Send the session cookie over HTTPS only. Unset: on, unless the "
        "dashboard listens on this machine only (127.0.0.1, a first run), where it is off "
        "and the log says so. Serve it to other machines through a TLS proxy.",
    )
    metrics_token_file: Path | None = Field(
        None,
        description="File holding a bearer token that GET /metrics then requires; without "
        "it the metrics are open to anyone who can reach the port.",
    )
    command_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="How long a guard's open-door request waits for the node's answer.",
    )

    def cookies_secure(self) -> bool:
        """Whether the session cookie carries ``Secure`` (see ``secure_cookies``)."""
        if self.secure_cookies is not None:
            return self.secure_cookies
        return not is_loopback(self.host)

    trusted_proxies: tuple[str, ...] = Field(
        (),
        description="Addresses of reverse proxies whose X-Forwarded-For is believed. None "
        "by default: a client's address is the one it connects from, so no client can name "
        "another address to dodge the per-address login limit.",
    )
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        description="Largest request body the dashboard and API take; a larger one is "
        "refused with 413 as soon as it is known to be larger, before it is all read.",
    )


class IngestConfig(Section):
    batch_max: int = Field(
        2000,
        ge=1,
        le=5000,
        description="Store at most this many messages in one transaction (a backlog after "
        "an outage goes in fewer, larger transactions: each costs a commit and the "
        "counting's reads).",
    )
    batch_wait_s: float = Field(
        0.005,
        ge=0,
        le=1,
        description="After the first message of a batch, wait at most this long for more.",
    )
    max_payload_bytes: int = Field(
        16_384, ge=1024, description="Event payloads larger than this are rejected unread."
    )
    max_clock_ahead_s: float = Field(
        120.0,
        ge=1,
        le=3600,
        description="An event stamped further than this in the future (by the hub's clock) "
        "is refused: a door's clock may be a little ahead, never by minutes.",
    )
    unhealthy_after_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Once the store has refused every batch for this long, /healthz answers "
        "503: events wait at the broker and the doors, nothing is counted.",
    )


class LocalRegistryConfig(Section):
    kind: Literal["local"] = Field(
        description="A file of people (NIK, name, status) standing in for the central "
        "registry, for tests and demonstrations."
    )
    path: Path = Field(
        description="CSV with the header nik,name,status (and optionally subject), or a "
        "JSON list of objects with those keys."
    )


class HttpRegistryConfig(Section):
    kind: Literal["http"] = Field(description="The central registry over HTTPS.")
    url: str = Field(
        min_length=1,
        description="The registry's base URL: https://, or http:// to this machine only "
        "(127.0.0.1, localhost), as tokens and personal data cross the network.",
    )

    @field_validator("url")
    @classmethod
    def _https_unless_local(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
            return value
        raise ValueError(
            "use an https:// address (http:// only to this machine): the hub's token and "
            "people's statuses would cross the network in clear"
        )

    credentials_file: Path | None = Field(
        None,
        description="File holding the facility's hub token (rh_...), for a hub that serves "
        "one facility; relative names are looked up in $CREDENTIALS_DIRECTORY when set.",
    )
    credentials: dict[Ident, Path] = Field(
        default_factory=dict,
        description="For a hub that serves several facilities: each facility's id and the "
        "file holding its own hub token (a token speaks for one facility only).",
    )
    timeout_s: float = Field(5.0, gt=0, le=60, description="How long one lookup may take.")
    sync_timeout_s: float = Field(
        30.0, gt=0, le=600, description="How long one sync request (a feed page, a push) may take."
    )
    sync_interval_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="How often the trust list and the status feed are synced; a status "
        "change reaches the doors within about this long.",
    )
    page_size: int = Field(
        10_000, ge=1, le=10_000, description="Status changes asked for in one feed request."
    )
    push_interval_s: float = Field(
        10.0, gt=0, le=3600, description="How often closed visits are pushed to the registry."
    )
    push_batch: int = Field(1000, ge=1, le=10_000, description="Most visits pushed in one request.")
    retry_max_s: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="Longest wait between retries while the registry cannot be reached.",
    )
    phone_checkins: bool = Field(
        True,
        description="Keep a channel open to the registry for phone check-ins (visitors who "
        "scan a door's poster with their phone); the hub decides and counts them.",
    )
    channel_wait_s: float = Field(
        25.0,
        ge=1,
        le=30,
        description="How long each request of the phone check-in channel stays open "
        "waiting for a check-in (shorter for proxies that cut idle requests sooner).",
    )
    lists_refresh_s: float = Field(
        3600.0,
        gt=0,
        description="Re-publish unchanged lists to the doors at least this often (with the "
        "time the registry last confirmed them), so a door's list age shows how long ago "
        "the hub last heard from the registry.",
    )
    pass_valid_days: int = Field(
        30,
        ge=1,
        le=3660,
        description="Not used: the registry builds and signs the doors' status list with "
        "its own pass_valid_days. Accepted so that older configurations still load.",
    )


RegistryConfig = Annotated[LocalRegistryConfig | HttpRegistryConfig, Field(discriminator="kind")]


class RetentionConfig(Section):
    days: int = Field(
        21,
        ge=1,
        le=3650,
        description="The tracing window: visits are kept, and subject ids kept on events, "
        "for this many days; older ones are purged.",
    )
    max_visit_hours: float = Field(
        24.0,
        gt=0,
        le=24 * 31,
        description="An exit closes the subject's check-in at the facility only if it came "
        "within this many hours (the registry refuses longer visits).",
    )
    purge_interval_s: float = Field(
        3600.0, gt=0, le=86_400, description="How often old visits and subject ids are purged."
    )


class HomeAssistantConfig(Section):
    enabled: bool = Field(True, description="Publish Home Assistant MQTT discovery configs.")
    discovery_prefix: str = Field(
        "homeassistant",
        pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        description="Home Assistant's discovery topic prefix.",
    )


class ZoneConfig(Section):
    id: Ident = Field(description="Zone id, unique in the facility.")
    name: str = Field(min_length=1, max_length=200, description="Zone name shown to staff.")
    doors: list[Ident] = Field(
        min_length=1, description="Doors whose passages count for this zone."
    )


class DoorConfig(Section):
    id: Ident = Field(description="Door id, unique in the facility.")
    name: str = Field(min_length=1, max_length=200, description="Door name shown to staff.")
    direction: Literal["entry", "exit", "both"] = Field(
        description="What a passage through this door means."
    )
    nodes: list[Ident] = Field(
        default_factory=list,
        description="Node ids allowed to report as this door; empty allows any node.",
    )


class FacilityConfig(Section):
    id: Ident = Field(description="Facility id, as in the MQTT topics.")
    name: str = Field(min_length=1, max_length=200, description="Facility name shown to staff.")
    capacity: int | None = Field(
        None, ge=0, description="Most people allowed inside at once (absolute)."
    )
    capacity_percent: float | None = Field(
        None,
        gt=0,
        le=100,
        description="Capacity as a percentage of nominal_max, as health protocols set it.",
    )
    nominal_max: int | None = Field(
        None, ge=0, description="The building's normal maximum, for capacity_percent."
    )
    soft_threshold_percent: float = Field(
        80.0,
        gt=0,
        le=100,
        description="Occupancy at this percentage of capacity shows as nearly full.",
    )
    reset_at: time | None = Field(
        None,
        description="Local time (HH:MM) of the end-of-day reset of occupancy to zero.",
    )
    timezone: str = Field("UTC", description="IANA time zone of reset_at, e.g. Asia/Jakarta.")
    language: Literal["id", "en"] = Field(
        "id",
        description="The dashboard's language when a browser asks for none Pintu speaks: "
        "id (Bahasa Indonesia) or en (English).",
    )
    zones: list[ZoneConfig] = Field(
        default_factory=list, description="Areas counted apart from their doors."
    )
    doors: list[DoorConfig] = Field(
        default_factory=list,
        description="The facility's doors; when any are listed, events from other doors "
        "are rejected.",
    )
    policy: PolicyConfig = Field(
        default_factory=PolicyConfig,
        description="What the facility admits, as its doors' [policy]: the hub decides "
        "phone check-ins (a door's poster scanned by a visitor's phone) with it.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value

    @field_validator("reset_at")
    @classmethod
    def _whole_minute(cls, value: time | None) -> time | None:
        if value is not None and (value.second or value.microsecond or value.tzinfo):
            raise ValueError("give a local time as HH:MM")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FacilityConfig:
        if self.capacity is not None and self.capacity_percent is not None:
            raise ValueError("set either capacity or capacity_percent, not both")
        if (self.capacity_percent is None) != (self.nominal_max is None):
            raise ValueError("capacity_percent and nominal_max go together")
        _unique("door", [d.id for d in self.doors])
        _unique("zone", [z.id for z in self.zones])
        door_ids = {d.id for d in self.doors}
        for zone in self.zones:
            unknown = [d for d in zone.doors if door_ids and d not in door_ids]
            if unknown:
                raise ValueError(f"zone {zone.id!r} names unknown doors: {', '.join(unknown)}")
        owner: dict[str, str] = {}
        for door in self.doors:
            for node in door.nodes:
                if node in owner and owner[node] != door.id:
                    raise ValueError(
                        f"node {node!r} is listed under doors {owner[node]!r} and {door.id!r}"
                    )
                owner[node] = door.id
        return self

    @property
    def effective_capacity(self) -> int | None:
        """The capacity in people, or None when the facility has no limit."""
        if self.capacity is not None:
            return self.capacity
        if self.capacity_percent is not None and self.nominal_max is not None:
            # A percentage of people rounds down: 50 % of 7 is 3 people, never 4.
            return math.floor(self.nominal_max * self.capacity_percent / 100 + 1e-9)
        return None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def door(self, door_id: str) -> DoorConfig | None:
        return next((d for d in self.doors if d.id == door_id), None)

    def zones_of(self, door_id: str) -> list[str]:
        return [z.id for z in self.zones if door_id in z.doors]


class HubConfig(Section):
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Link to the broker.")
    store: StoreConfig = Field(description="Where events, occupancy and accounts are kept.")
    web: WebConfig = Field(default_factory=WebConfig, description="Dashboard and API.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Event batching.")
    homeassistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, description="Home Assistant MQTT discovery."
    )
    registry: RegistryConfig | None = Field(
        None,
        description="Where staff look people up by NIK and name, and (http) what the hub "
        "syncs the doors' lists with and pushes visits to; without it the desk's manual "
        "check-in is unavailable.",
    )
    facilities: list[FacilityConfig] = Field(
        min_length=1, description="The facilities this hub serves."
    )
    node_offline_after_s: float = Field(
        60.0,
        ge=0,
        description="Raise an alert when a node has been offline this long; a shorter "
        "outage (a reboot) raises none.",
    )
    stale_lists_after_s: float = Field(
        86_400.0,
        gt=0,
        description="Raise an alert when a node's trust or status list is older than this.",
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig,
        description="How long visits and subject ids are kept (the tracing window).",
    )

    @model_validator(mode="after")
    def _unique_facilities(self) -> HubConfig:
        _unique("facility", [f.id for f in self.facilities])
        return self

    @model_validator(mode="after")
    def _registry_tokens(self) -> HubConfig:
        # A hub token speaks for one facility: each facility needs its own.
        registry = self.registry
        if not isinstance(registry, HttpRegistryConfig):
            return self
        ids = [f.id for f in self.facilities]
        if registry.credentials:
            if registry.credentials_file is not None:
                raise ValueError(
                    "registry: give credentials_file (one facility) or credentials (one token "
                    "file per facility), not both"
                )
            unknown = sorted(set(registry.credentials) - set(ids))
            if unknown:
                raise ValueError(f"registry.credentials: unknown facility {unknown[0]!r}")
            missing = [i for i in ids if i not in registry.credentials]
            if missing:
                raise ValueError(f"registry.credentials: no token file for facility {missing[0]!r}")
        elif registry.credentials_file is None:
            raise ValueError(
                "registry.credentials_file: the http registry needs the hub token's file"
            )
        elif len(ids) > 1:
            raise ValueError(
                "registry.credentials_file: a hub token speaks for one facility; with several "
                "facilities give [registry.credentials] with a token file for each"
            )
        return self

    def facility(self, facility_id: str) -> FacilityConfig | None:
        return next((f for f in self.facilities if f.id == facility_id), None)


def _unique(what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise ValueError(f"{what} id {item!r} appears twice")
        seen.add(item)


def read_secret(path: Path) -> str:
    """The secret in ``path``, trailing white space removed.

    A relative name is looked up in systemd's ``$CREDENTIALS_DIRECTORY`` first, so a unit
    can hand the hub its secrets without putting them in the config.
    """
    candidates = [path]
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and not path.is_absolute():
        candidates.insert(0, Path(creds) / path)
    for candidate in candidates:
        if candidate.is_file():
            try:
                return candidate.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as err:
                raise ConfigError(f"{candidate}: cannot read secret: {err}") from err
    raise ConfigError(f"{path}: secret file not found")


# Discriminated unions put the tag's value in the error location; it is not a key.
_UNION_TAGS = {"sqlite", "postgresql", "local", "http"}


def parse_config(text: str, where: str = "hub.toml") -> HubConfig:
    try:
        return parse_model(text, HubConfig, where, _UNION_TAGS)
    except ConfigTextError as err:
        raise ConfigError(str(err)) from err


def load_config(path: str | Path) -> HubConfig:
    """The hub's configuration in ``path``; a relative ``[store] path`` is taken from the
    file's folder, as the registry's, so the hub finds its database wherever it starts."""
    try:
        text = read_text(path)
    except ConfigTextError as err:
        raise ConfigError(str(err)) from err
    config = parse_config(text, str(path))
    store = config.store
    if isinstance(store, SqliteStoreConfig) and not store.path.is_absolute():
        beside = Path(path).parent / store.path
        config = config.model_copy(update={"store": store.model_copy(update={"path": beside})})
    return config
