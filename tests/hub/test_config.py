"""The hub's config: a full example loads, and every mistake names its key and line."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from hub.config import (
    DEFAULT_SESSION_EXPIRY_S,
    PostgresStoreConfig,
    SqliteStoreConfig,
    load_config,
    parse_config,
    read_secret,
)
from hub.errors import ConfigError, HubError
from protocol.configtext import find_line

EXAMPLE = """\
node_offline_after_s = 90
stale_lists_after_s = 43200

[mqtt]
host = "broker.lan"
port = 8883
username = "hub"
password_file = "mqtt-password"

[store]
backend = "sqlite"
path = "/var/lib/pintu-hub/hub.db"

[web]
port = 8080
secret_key_file = "web-secret"

[[facilities]]
id = "mall-a"
name = "Mall A"
capacity_percent = 50
nominal_max = 301
soft_threshold_percent = 90
reset_at = "23:30"
timezone = "Asia/Jakarta"

[[facilities.zones]]
id = "food-court"
name = "Food court"
doors = ["food-in", "food-out"]

[[facilities.doors]]
id = "main"
name = "Main entrance"
direction = "both"
nodes = ["main-1", "main-2"]

[[facilities.doors]]
id = "food-in"
name = "Food court in"
direction = "entry"

[[facilities.doors]]
id = "food-out"
name = "Food court out"
direction = "exit"

[[facilities]]
id = "clinic"
name = "Clinic"
capacity = 20
"""


def broken(old: str, new: str) -> str:
    assert old in EXAMPLE
    return EXAMPLE.replace(old, new, 1)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return str(caught.value)


def test_the_example_loads() -> None:
    config = parse_config(EXAMPLE)
    assert config.mqtt.session_expiry_s == DEFAULT_SESSION_EXPIRY_S
    assert config.mqtt.share_group == "pintu-hub"
    assert isinstance(config.store, SqliteStoreConfig)
    mall, clinic = config.facilities
    assert mall.effective_capacity == 150  # 50 % of 301, rounded down
    assert clinic.effective_capacity == 20
    assert mall.reset_at == time(23, 30)
    assert mall.zones_of("food-in") == ["food-court"]
    assert mall.door("main") is not None and mall.door("main").nodes == ["main-1", "main-2"]
    assert config.facility("clinic") is clinic and config.facility("nowhere") is None
    assert config.node_offline_after_s == 90


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("port = 8883", "port = 70000", "hub.toml:6: mqtt.port: Input should be less than"),
        ('username = "hub"', 'user = "hub"', "hub.toml:7: mqtt.user: unknown key"),
        ('direction = "exit"', 'direction = "out"', "hub.toml:46: facilities.0.doors.2.direction"),
        ("capacity = 20", "capacity = -1", "hub.toml:51: facilities.1.capacity"),
        ("capacity = 20", "capcity = 20", "hub.toml:51: facilities.1.capcity: unknown key"),
        ('path = "/var/lib/pintu-hub/hub.db"', "", "hub.toml:10: store.path: required key"),
        ('timezone = "Asia/Jakarta"', 'timezone = "Mars/Base"', "unknown time zone"),
        ('reset_at = "23:30"', 'reset_at = "25:00"', "facilities.0.reset_at"),
        ('reset_at = "23:30"', 'reset_at = "23:30:15"', "HH:MM"),
        ("nominal_max = 301", "", "capacity_percent and nominal_max go together"),
        ("capacity = 20", "capacity = 20\ncapacity_percent = 10", "not both"),
        ('doors = ["food-in", "food-out"]', 'doors = ["food-in", "roof"]', "unknown doors: roof"),
        ('id = "clinic"', 'id = "mall-a"', "facility id 'mall-a' appears twice"),
        ('id = "food-in"', 'id = "main"', "door id 'main' appears twice"),
        ('backend = "sqlite"', 'backend = "mysql"', "store: Input tag 'mysql'"),
    ],
)
def test_mistakes_name_the_key_and_line(old: str, new: str, expected: str) -> None:
    assert expected in error_of(broken(old, new))


def test_a_node_belongs_to_one_door() -> None:
    text = broken('direction = "entry"\n', 'direction = "entry"\nnodes = ["main-1"]\n')
    assert "node 'main-1' is listed under doors 'main' and 'food-in'" in error_of(text)


def test_postgresql_is_accepted_by_the_config() -> None:
    text = broken(
        'backend = "sqlite"\npath = "/var/lib/pintu-hub/hub.db"',
        'backend = "postgresql"\ndsn = "host=db dbname=pintu"',
    )
    assert isinstance(parse_config(text).store, PostgresStoreConfig)


def test_find_line_counts_tables_of_arrays() -> None:
    assert find_line(EXAMPLE, ("facilities", 1, "name")) == 50
    assert find_line(EXAMPLE, ("facilities", 0, "doors", 1, "id")) == 39
    assert find_line(EXAMPLE, ("mqtt", "host")) == 5
    assert find_line(EXAMPLE, ("nowhere", "key")) is None


def test_files_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(path)
    path.write_text("[store\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)
    path.write_text(EXAMPLE, encoding="utf-8")
    assert load_config(path).facilities[0].id == "mall-a"
    error = ConfigError("x")
    assert isinstance(error, HubError) and isinstance(error, ValueError)


def test_a_relative_store_path_is_taken_from_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "hub.toml"
    path.write_text(EXAMPLE.replace("/var/lib/pintu-hub/hub.db", "data/hub.db"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # not the config's folder: the store must not land here
    config = load_config(Path("etc/hub.toml"))
    assert isinstance(config.store, SqliteStoreConfig)
    assert config.store.path.resolve() == folder / "data" / "hub.db"
    path.write_text(EXAMPLE, encoding="utf-8")
    config = load_config(path)
    assert isinstance(config.store, SqliteStoreConfig)
    assert config.store.path == Path("/var/lib/pintu-hub/hub.db")


def test_secrets_come_from_the_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("s3cret\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert parse_config(EXAMPLE).mqtt.password() == "s3cret"
    assert read_secret(creds / "mqtt-password") == "s3cret"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match="secret file not found"):
        parse_config(EXAMPLE).mqtt.password()
