"""``pintu keys``: registry signing keys and the trust list that goes with them."""

from __future__ import annotations

import time
from pathlib import Path

import click

from pintu.commands.common import echo_json
from protocol.errors import ProtocolError
from protocol.trust import SigningKey, TrustList


@click.group()
def keys() -> None:
    """Signing keys and trust lists.

    \b
    Example:
      pintu keys generate --out keys/
    """


@keys.command("generate")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the key file and trust.json (created if missing).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def generate(out_dir: Path, as_json: bool) -> None:
    """Write a new Ed25519 signing key and add it to DIR/trust.json.

    The key is written as signing-<kid>.pem, readable by its owner only. An existing
    trust.json keeps its keys, so generating again is how a key is rotated in.

    \b
    Example:
      pintu keys generate --out keys/
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    trust_path = out_dir / "trust.json"
    try:
        trust = TrustList.load(trust_path) if trust_path.exists() else TrustList()
    except ProtocolError as err:
        raise click.ClickException(str(err)) from err
    key = SigningKey.generate()
    key_path = out_dir / f"signing-{key.kid_hex}.pem"
    key.save(key_path)
    now = int(time.time())
    entry = key.trusted(not_before=now)
    trust = TrustList.of([*trust.keys.values(), entry], updated_at=now)
    trust.save(trust_path)
    if as_json:
        echo_json({"kid": key.kid_hex, "key": str(key_path), "trust": str(trust_path)})
    else:
        click.echo(f"key {key.kid_hex} written to {key_path}")
        click.echo(f"trust list {trust_path} now holds {len(trust.keys)} key(s)")
