"""The technician's first tools, driven as a user types them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pintu.cli import cli

SUBJECT = "00112233445566778899aabb"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def keydir(runner: CliRunner, tmp_path: Path) -> Path:
    out = tmp_path / "keys"
    result = runner.invoke(cli, ["keys", "generate", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out


def signing_key(keydir: Path) -> Path:
    (key,) = keydir.glob("signing-*.pem")
    return key


def issue(runner: CliRunner, keydir: Path, *extra: str) -> str:
    result = runner.invoke(
        cli,
        ["pass", "issue", "--key", str(signing_key(keydir)), "--subject", SUBJECT, *extra],
    )
    assert result.exit_code == 0, result.output
    return result.output.strip()


def all_commands(group: click.Group, prefix: str = "pintu") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = [(prefix, group)]
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, f"{prefix} {name} does not load"
        if isinstance(command, click.Group):
            found += all_commands(command, f"{prefix} {name}")
        else:
            found.append((f"{prefix} {name}", command))
    return found


@pytest.mark.parametrize("name_command", all_commands(cli), ids=lambda nc: nc[0])
def test_every_command_has_help_with_an_example(name_command: tuple[str, click.Command]) -> None:
    name, command = name_command
    assert command.help, f"{name} has no help"
    assert "Example:" in command.help, f"{name}'s help shows no example"
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, f"{name} {param.opts[0]} has no help"


def test_every_subcommand_group_is_there() -> None:
    names = [name for name, _ in all_commands(cli)]
    for group in ("keys", "pass", "decode", "node", "hub", "demo", "registry", "provision"):
        assert f"pintu {group}" in names
    assert "pintu hub serve" in names and "pintu provision node enroll" in names


def test_a_service_loads_only_its_own_commands(tmp_path: Path) -> None:
    """``pintu hub check-config`` (as ``pintu hub serve``) does not import the other groups."""
    config = Path(__file__).parents[2] / "docs" / "examples" / "hub.toml"
    code = (
        "import sys\n"
        "from pintu.cli import cli\n"
        f"sys.argv = ['pintu', 'hub', 'check-config', '--config', {str(config)!r}]\n"
        "try:\n    cli(prog_name='pintu')\nexcept SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pintu.commands.', 'segno'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.splitlines()[-1]
    assert out == "['pintu.commands.common', 'pintu.commands.hub']", out


def test_generate_twice_rotates_in_a_second_key(runner: CliRunner, keydir: Path) -> None:
    result = runner.invoke(cli, ["keys", "generate", "--out", str(keydir)])
    assert result.exit_code == 0
    trust = json.loads((keydir / "trust.json").read_text())
    assert len(trust["keys"]) == 2
    assert len(list(keydir.glob("signing-*.pem"))) == 2


def test_issue_then_verify_text(runner: CliRunner, keydir: Path) -> None:
    text = issue(runner, keydir, "--status", "yellow")
    result = runner.invoke(
        cli, ["pass", "verify", text, "--trust", str(keydir / "trust.json"), "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["ok"] is True
    assert doc["status"] == "yellow"
    assert doc["doses"] == 1
    assert doc["subject"] == SUBJECT


def test_verify_expired_pass_exits_1_with_reason(runner: CliRunner, keydir: Path) -> None:
    text = issue(runner, keydir, "--status", "green", "--valid-for", "1h")
    result = runner.invoke(
        cli,
        ["pass", "verify", text, "--trust", str(keydir / "trust.json"), "--at", "4102444800"],
    )
    assert result.exit_code == 1
    assert "invalid: expired: pass has expired" in result.output


def test_verify_forged_pass_exits_1(runner: CliRunner, keydir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    runner.invoke(cli, ["keys", "generate", "--out", str(other)])
    text = issue(runner, other, "--status", "green")
    result = runner.invoke(cli, ["pass", "verify", text, "--trust", str(keydir / "trust.json")])
    assert result.exit_code == 1
    assert "unknown_key" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pass", "verify", "--trust", "TRUST"], "either TEXT or --image"),
        (["pass", "verify", "x", "--image", "y.png", "--trust", "TRUST"], "either TEXT or --image"),
        (["pass", "verify", "x", "--trust", "/nonexistent/trust.json"], "cannot read trust list"),
        (["pass", "verify", "x", "--trust", "TRUST", "--at", "yesterday"], "not a time"),
        (
            ["pass", "issue", "--key", "KEY", "--subject", "nothex", "--status", "green"],
            "24 hex digits",
        ),
        (
            ["pass", "issue", "--key", "KEY", "--subject", SUBJECT, "--status", "blue"],
            "'blue' is not one of",
        ),
        (
            [
                "pass",
                "issue",
                "--key",
                "KEY",
                "--subject",
                SUBJECT,
                "--status",
                "red",
                "--valid-for",
                "soon",
            ],
            "not a duration",
        ),
        (
            ["pass", "issue", "--key", "/nonexistent.pem", "--subject", SUBJECT, "--status", "red"],
            "cannot read key file",
        ),
    ],
)
def test_usage_errors_exit_2_with_a_reason(
    runner: CliRunner, keydir: Path, args: list[str], message: str
) -> None:
    args = [
        a.replace("TRUST", str(keydir / "trust.json")).replace("KEY", str(signing_key(keydir)))
        for a in args
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_png_roundtrip_through_decode_and_verify(
    runner: CliRunner, keydir: Path, tmp_path: Path
) -> None:
    png = tmp_path / "pass.png"
    text = issue(runner, keydir, "--status", "black", "--png", str(png))
    for backend in ("escalating", "zxingcpp", "pyzbar"):
        result = runner.invoke(cli, ["decode", "--backend", backend, "--json", str(png)])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        assert doc["texts"] == [text]
        assert doc["ms"] >= 0
    result = runner.invoke(
        cli, ["pass", "verify", "--image", str(png), "--trust", str(keydir / "trust.json")]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("valid: black pass")


def test_verify_image_without_code(runner: CliRunner, keydir: Path, tmp_path: Path) -> None:
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("L", (320, 240), 200).save(blank)
    result = runner.invoke(
        cli, ["pass", "verify", "--image", str(blank), "--trust", str(keydir / "trust.json")]
    )
    assert result.exit_code == 1
    assert "no QR code" in result.output


def test_decode_reads_a_dark_mode_pass_through_escalation(
    runner: CliRunner, keydir: Path, tmp_path: Path
) -> None:
    from PIL import Image, ImageOps

    png = tmp_path / "pass.png"
    text = issue(runner, keydir, "--status", "green", "--png", str(png))
    dark = tmp_path / "dark-mode.png"
    with Image.open(png) as image:
        ImageOps.invert(image.convert("L")).save(dark)  # light modules on dark
    plain = runner.invoke(cli, ["decode", "--backend", "zxingcpp", "--json", str(dark)])
    assert json.loads(plain.output)["texts"] == []
    result = runner.invoke(cli, ["decode", "--json", str(dark)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["texts"] == [text]
    assert doc["read_by"].startswith("invert")
    result = runner.invoke(cli, ["decode", str(dark)])
    assert f"{dark}: {text} (read by: invert" in result.output


def test_decode_goes_on_past_unreadable_files(runner: CliRunner, tmp_path: Path) -> None:
    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("L", (64, 64), 255).save(good)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG this is not really a png")
    missing = tmp_path / "missing.png"
    result = runner.invoke(cli, ["decode", "--json", str(junk), str(missing), str(good)])
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [Path(line["path"]).name for line in lines] == ["junk.png", "missing.png", "good.png"]
    assert "error" in lines[0]
    assert "error" in lines[1]
    assert lines[2]["texts"] == []
    assert "Traceback" not in result.output


EXAMPLE_NODE_CONFIG = Path(__file__).parents[2] / "docs" / "examples" / "node.toml"


def test_example_node_config_is_valid(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["node", "check-config", "--config", str(EXAMPLE_NODE_CONFIG)])
    assert result.exit_code == 0, result.output
    assert "ok: node main-in-1 at mall-a/main-in (entry)" in result.output


def test_bad_node_config_names_each_key_and_line(runner: CliRunner, tmp_path: Path) -> None:
    text = EXAMPLE_NODE_CONFIG.read_text()
    text = text.replace('direction = "entry"', 'direction = "sideways"')
    text = text.replace("pulse_ms = 3000", "pulse_ms = 5")
    text = text.replace("[scan]\n", "[scan]\ncooldwon_s = 3\n")
    path = tmp_path / "node.toml"
    path.write_text(text)
    lines = text.splitlines()
    result = runner.invoke(cli, ["node", "check-config", "--config", str(path)])
    assert result.exit_code == 1
    for key, needle, message in [
        ("direction", 'direction = "sideways"', "'entry', 'exit' or 'both'"),
        ("pins.relay.pulse_ms", "pulse_ms = 5", "greater than or equal to 100"),
        ("scan.cooldwon_s", "cooldwon_s = 3", "unknown key"),
    ]:
        line = next(i for i, text_line in enumerate(lines, 1) if text_line.startswith(needle))
        assert f"{path}:{line}: {key}: " in result.output
        assert message in result.output
    assert "Traceback" not in result.output


def test_a_camera_stream_picamera2_would_refuse_fails_check_config(
    runner: CliRunner, tmp_path: Path
) -> None:
    text = EXAMPLE_NODE_CONFIG.read_text()
    text = text.replace("height = 480\n", "height = 480\nmain_width = 320\nmain_height = 240\n", 1)
    path = tmp_path / "node.toml"
    path.write_text(text)
    result = runner.invoke(cli, ["node", "check-config", "--config", str(path)])
    assert result.exit_code == 1
    assert ": source: " in result.output  # the key and its line
    assert "larger than the main stream (320x240); picamera2 refuses that" in result.output
    assert "Traceback" not in result.output


def test_unreadable_node_config(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["node", "check-config", "--config", str(tmp_path / "no.toml")])
    assert result.exit_code == 1
    assert "cannot read config" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("node_id = [unclosed")
    result = runner.invoke(cli, ["node", "check-config", "--config", str(bad)])
    assert result.exit_code == 1
    assert "not valid TOML" in result.output
