"""The registry's typed configuration (``registry.toml``).

Unknown keys and bad values are errors that name the key and, where it can be found, the
line; the registry refuses to start on any of them. Relative paths are taken from the
directory of the configuration file, so a configuration and its state can move together.

Secrets never live in this file: the keyed-hash key and the signing keys are files the
registry creates itself (mode 0600) and never hands out.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

from protocol.model import StrictModel
from registry.errors import ConfigError
from runtime.listen import is_loopback


class Section(StrictModel):
    """A config section: unknown keys are rejected."""


class WebConfig(Section):
    host: str = Field("127.0.0.1", min_length=1, description="Address the API listens on.")
    port: int = Field(8090, ge=0, le=65535, description="TCP port of the API (0: any free one).")
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted, except CSV imports."
    )
    max_import_bytes: int = Field(
        64 * 1_048_576, ge=1024, description="Largest CSV body accepted by the import route."
    )
    max_visit_batch: int = Field(
        10_000, ge=1, le=100_000, description="Most visits one POST /api/v1/visits may carry."
    )
    trusted_proxies: tuple[str, ...] = Field(
        (),
        description="Addresses of reverse proxies whose X-Forwarded-For is believed; none "
        "by default, so a client cannot name another address to dodge a per-address limit.",
    )
    personal_reads_per_minute: int = Field(
        60,
        ge=1,
        description="Reads of personal data (person by subject, lookup by NIK, tracing) one "
        "token may make a minute; more are refused with 429.",
    )
    personal_reads_per_address_per_minute: int = Field(
        120,
        ge=1,
        description="The same reads from one client address a minute, whatever the token.",
    )
    trust_max_age_s: int = Field(
        300,
        ge=0,
        description="Cache-Control max-age of the trust list: how long a hub may reuse it "
        "without asking again (it revalidates with If-None-Match after that).",
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="How long an operator's or PIC's login lasts."
    )
    secure_cookies: bool | None = Field(
        None,
        description="Send the console's session cookie over HTTPS only. Unset: on, unless "
        "the registry listens on this machine only (127.0.0.1). Serve the console to other "
        "machines through a TLS proxy.",
    )

    def cookies_secure(self) -> bool:
        """Whether the console's session cookie carries ``Secure``."""
        if self.secure_cookies is not None:
            return self.secure_cookies
        return not is_loopback(self.host)


class SqliteStoreConfig(Section):
    kind: Literal["sqlite"] = Field(
        "sqlite", description="Store backend: 'sqlite' (the default) or 'postgresql'."
    )
    path: Path = Field(Path("registry.db"), description="The SQLite database file.")
    busy_timeout_s: float = Field(
        10.0,
        gt=0,
        description="How long a writer waits for another process (a CLI command beside the "
        "running service) to finish its transaction.",
    )

    def describe(self) -> str:
        return f"SQLite {self.path}"


class PostgresStoreConfig(Section):
    kind: Literal["postgresql"] = Field(
        description="PostgreSQL, for a registry run by several processes or machines."
    )
    dsn: str = Field(
        min_length=1,
        description="libpq connection string without a password (put that in a .pgpass "
        "file, or the file $PGPASSFILE names).",
    )

    @field_validator("dsn")
    @classmethod
    def _no_secret(cls, dsn: str) -> str:
        import psycopg  # only a PostgreSQL store needs it: a SQLite registry stays lighter
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as err:
            raise ValueError(f"not a libpq connection string: {err}") from err
        if "password" in params:
            # The configuration is readable by whoever may read the service's settings.
            raise ValueError("holds a password; put it in a .pgpass file instead")
        return dsn

    def describe(self) -> str:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(self.dsn)
        host = params.get("host", "localhost")
        database = params.get("dbname", params.get("user", ""))
        return f"PostgreSQL {host}:{params.get('port', 5432)}/{database}"


def _store_kind(value: Any) -> str:
    # Without a kind the store is SQLite, as it was before PostgreSQL was supported.
    if isinstance(value, dict):
        return str(value.get("kind", "sqlite"))
    return str(getattr(value, "kind", "sqlite"))


StoreConfig = Annotated[
    Annotated[SqliteStoreConfig, Tag("sqlite")] | Annotated[PostgresStoreConfig, Tag("postgresql")],
    Discriminator(
        _store_kind,
        custom_error_type="store_kind",
        custom_error_message="Input should be 'sqlite' or 'postgresql'",
    ),
]
# The tag of the store's kind appears in an error's location; it is not a key.
_STORE_KINDS = {"sqlite", "postgresql"}


class RegistryConfig(Section):
    subject_key_file: Path = Field(
        Path("subject.key"),
        description="The keyed-hash key that turns a NIK into a subject id; created with "
        "mode 0600 on first start if missing. Losing it changes every subject id.",
    )
    keys_dir: Path = Field(
        Path("keys"),
        description="Signing keys (signing-<kid>.pem, mode 0600) and their trust list "
        "(trust.json); a first key is made when the directory holds none.",
    )
    tracing_window_days: int = Field(
        21, ge=1, le=366, description="Visits are kept and traced this many days, then purged."
    )
    pass_valid_days: int = Field(30, ge=1, le=3660, description="How long an issued pass lasts.")
    activation_token_hours: float = Field(
        72.0,
        gt=0,
        le=24 * 90,
        description="How long a facility's one-time activation token stays usable.",
    )
    wallet_link_hours: float = Field(
        24.0,
        gt=0,
        le=24 * 30,
        description="How long a wallet activation link (a pass for a phone) stays usable.",
    )
    phone_answer_s: float = Field(
        4.0,
        gt=0,
        le=20,
        description="How long a phone checking in at a door's poster waits for the "
        "facility's hub; past it the phone shows the pass's own colour to staff and the "
        "check-in is counted when the hub is back.",
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="The address phones open the registry at, such as "
        "'https://registry.example.id'; wallet links and the codes of door posters "
        "(<public_url>/d/<facility>/<door>) start with it. Unset: "
        "http://<web.host>:<web.port>.",
    )
    max_visit_hours: float = Field(
        24.0,
        gt=0,
        le=24 * 7,
        description="Longest visit accepted from a hub; it bounds the scan of a tracing query.",
    )
    purge_interval_s: float = Field(
        3600.0, gt=0, description="How often the running service purges old visits."
    )
    web: WebConfig = Field(default_factory=WebConfig, description="The HTTP API.")
    store: StoreConfig = Field(default_factory=SqliteStoreConfig, description="Where data is kept.")

    def base_url(self) -> str:
        """The address phones open the registry at: ``public_url``, else the API's own."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.web.host}:{self.web.port}"

    def resolved(self, base: Path) -> RegistryConfig:
        """This configuration with its relative paths taken from ``base``."""

        def at(path: Path) -> Path:
            return path if path.is_absolute() else base / path

        store = self.store
        if isinstance(store, SqliteStoreConfig):
            store = store.model_copy(update={"path": at(store.path)})
        return self.model_copy(
            update={
                "subject_key_file": at(self.subject_key_file),
                "keys_dir": at(self.keys_dir),
                "store": store,
            }
        )


def key_lines(text: str) -> dict[str, int]:
    """Where each dotted key (and each table) is first set in a TOML text, 1-based."""
    found: dict[str, int] = {}
    table = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line.startswith("["):
            table = ".".join(p.strip().strip("\"'") for p in line.strip("[] ").split("."))
            found.setdefault(table, number)
        elif "=" in line:
            key = line.split("=", 1)[0].strip().strip("\"'")
            found.setdefault(f"{table}.{key}" if table else key, number)
    return found


def _problems(err: ValidationError, text: str, where: str) -> list[str]:
    lines = key_lines(text)
    problems = []
    for item in err.errors():
        loc = [str(p) for p in item["loc"]]
        if loc[:1] == ["store"]:
            loc = [p for p in loc if p not in _STORE_KINDS]
            if item["type"] == "store_kind":
                loc.append("kind")
        key = ".".join(loc) or "(top level)"
        parent = ".".join(loc[:-1])
        line = lines.get(key) or lines.get(parent)
        at = f"{where}:{line}" if line else where
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        problems.append(f"{at}: {key}: {message}")
    return problems


def parse_config(
    text: str, where: str = "registry.toml", base: Path | None = None
) -> RegistryConfig:
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where}: not valid TOML: {err}") from err
    try:
        config = RegistryConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError("\n".join(_problems(err, text, where))) from err
    return config.resolved(base) if base is not None else config


def load_config(path: str | Path) -> RegistryConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text") from err
    return parse_config(text, str(path), path.parent.absolute())
