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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from registry.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    trust_max_age_s: int = Field(
        300,
        ge=0,
        description="Cache-Control max-age of the trust list: how long a hub may reuse it "
        "without asking again (it revalidates with If-None-Match after that).",
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="How long an operator's or PIC's login lasts."
    )


class StoreConfig(Section):
    kind: Literal["sqlite"] = Field(
        "sqlite",
        description="Store backend. Only 'sqlite' exists so far; the store sits behind an "
        "interface so that a PostgreSQL backend can be added.",
    )
    path: Path = Field(Path("registry.db"), description="The SQLite database file.")
    busy_timeout_s: float = Field(
        10.0,
        gt=0,
        description="How long a writer waits for another process (a CLI command beside the "
        "running service) to finish its transaction.",
    )


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
    store: StoreConfig = Field(default_factory=StoreConfig, description="Where data is kept.")

    def resolved(self, base: Path) -> RegistryConfig:
        """This configuration with its relative paths taken from ``base``."""

        def at(path: Path) -> Path:
            return path if path.is_absolute() else base / path

        return self.model_copy(
            update={
                "subject_key_file": at(self.subject_key_file),
                "keys_dir": at(self.keys_dir),
                "store": self.store.model_copy(update={"path": at(self.store.path)}),
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
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        parent = ".".join(str(p) for p in item["loc"][:-1])
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
