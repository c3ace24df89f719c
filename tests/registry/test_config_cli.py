"""The configuration file, the store's migrations and the operator's CLI commands."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from pintu.cli import cli
from registry.config import PostgresStoreConfig, load_config, parse_config
from registry.errors import ConfigError, StoreError
from registry.storage import HEAD, SqliteStore

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "registry.toml"


def test_example_config_is_valid_and_complete() -> None:
    config = load_config(EXAMPLE)
    assert config.tracing_window_days == 21 and config.pass_valid_days == 30
    assert config.store.path == Path("/var/lib/pintu-registry/registry.db")
    r = CliRunner().invoke(cli, ["registry", "check-config", "--config", str(EXAMPLE)])
    assert r.exit_code == 0, r.output
    assert "ok: API on 127.0.0.1:8090" in r.stdout


def test_relative_paths_are_taken_from_the_config_directory(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "registry.toml"
    path.parent.mkdir()
    path.write_text('keys_dir = "signing"\n[store]\npath = "../state/registry.db"\n')
    config = load_config(path)
    assert config.keys_dir == path.parent.absolute() / "signing"
    assert config.store.path == path.parent.absolute() / "../state/registry.db"
    assert config.subject_key_file == path.parent.absolute() / "subject.key"


def test_bad_keys_are_named_with_their_lines(tmp_path: Path) -> None:
    text = (
        "tracing_window_days = 0\n"
        "pass_valid_dais = 30\n"
        "\n"
        "[web]\n"
        'host = "0.0.0.0"\n'
        "port = 99999\n"
        "[store]\n"
        'kind = "postgres"\n'
    )
    path = tmp_path / "registry.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert f"{path}:1: tracing_window_days: Input should be greater than or equal to 1" in lines
    assert f"{path}:2: pass_valid_dais: unknown key" in lines
    assert any(line.startswith(f"{path}:6: web.port: ") for line in lines)
    assert any(line.startswith(f"{path}:8: store.kind: ") for line in lines)
    r = CliRunner().invoke(cli, ["registry", "check-config", "--config", str(path)])
    assert r.exit_code == 1 and "pass_valid_dais: unknown key" in r.output
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[web\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")


def test_migrations_run_once_and_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    SqliteStore(path).close()
    store = SqliteStore(path)  # a second open applies nothing again
    store.close()
    with sqlite3.connect(path) as db:
        versions = [row[0] for row in db.execute("SELECT version_num FROM alembic_version")]
        assert versions == [HEAD]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute("UPDATE alembic_version SET version_num = '0999'")
    db.close()
    with pytest.raises(StoreError, match="revision 0999, newer than"):
        SqliteStore(path)


def test_add_operator_from_a_password_file(config_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    secret = tmp_path / "password"
    secret.write_text("a long enough password\n")
    args = ["registry", "add-operator", "--config", str(config_file), "--username", "dewi"]
    r = runner.invoke(cli, [*args, "--password-file", str(secret)])
    assert r.exit_code == 0 and r.stdout == "added operator dewi\n"
    r = runner.invoke(cli, [*args, "--password-file", str(secret)])
    assert r.exit_code == 1 and "--update" in r.output
    r = runner.invoke(cli, [*args, "--password-file", str(secret), "--update"])
    assert r.exit_code == 0 and r.stdout == "updated operator dewi\n"
    secret.write_text("short\n")
    r = runner.invoke(cli, [*args, "--password-file", str(secret), "--update"])
    assert r.exit_code == 1 and "at least 10 characters" in r.output
    r = runner.invoke(cli, ["registry", "check-config", "--config", str(config_file), "--json"])
    assert json.loads(r.stdout)["tracing_window_days"] == 21


def test_a_postgresql_store_is_configured_by_kind_and_dsn(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(
        '[store]\nkind = "postgresql"\ndsn = "host=db.internal port=5433 dbname=registry"\n'
    )
    config = load_config(path)
    assert isinstance(config.store, PostgresStoreConfig)
    assert config.store.dsn == "host=db.internal port=5433 dbname=registry"
    r = CliRunner().invoke(cli, ["registry", "check-config", "--config", str(path)])
    assert r.exit_code == 0, r.output
    assert "store PostgreSQL db.internal:5433/registry;" in r.stdout
    r = CliRunner().invoke(cli, ["registry", "check-config", "--config", str(path), "--json"])
    assert json.loads(r.stdout)["store"] == {
        "kind": "postgresql",
        "dsn": "host=db.internal port=5433 dbname=registry",
    }
    # The example shows the PostgreSQL section, commented out, and it is valid as shown.
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# [store]")
    shown = "\n".join(line.removeprefix("# ") for line in lines[start : start + 3])
    assert isinstance(parse_config(shown).store, PostgresStoreConfig)


@pytest.mark.parametrize(
    ("store", "problem"),
    [
        ('kind = "postgresql"', "registry.toml:1: store.dsn: required key is missing"),
        (
            'kind = "postgresql"\ndsn = "dbname=registry"\npath = "r.db"',
            "registry.toml:4: store.path: unknown key",
        ),
        (
            'kind = "postgresql"\ndsn = "dbname=registry password=hunter2"',
            "registry.toml:3: store.dsn: Value error, holds a password; put it in a .pgpass "
            "file instead",
        ),
        (
            'kind = "postgresql"\ndsn = "dbname=\'registry"',
            "registry.toml:3: store.dsn: Value error, not a libpq connection string",
        ),
        ('dsn = "dbname=registry"', "registry.toml:2: store.dsn: unknown key"),
        ('kind = "sqlite"\ndsn = "dbname=registry"', "registry.toml:3: store.dsn: unknown key"),
    ],
)
def test_bad_store_sections_are_named(store: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"[store]\n{store}\n")
    assert str(info.value).startswith(problem), str(info.value)
