"""``pintu pass``: issue a pass (for tests and demos) and check one the way a door does."""

from __future__ import annotations

import time
from pathlib import Path

import click
import segno

from pintu.commands.common import Duration, Timestamp, echo_json
from protocol import passes
from protocol.errors import ProtocolError
from protocol.status import Status
from protocol.trust import SigningKey, TrustList

DEFAULT_DOSES = {Status.GREEN: 2, Status.YELLOW: 1, Status.RED: 0, Status.BLACK: 0}


@click.group("pass")
def pass_group() -> None:
    """Issue and verify passes.

    \b
    Example:
      pintu pass verify PINTU1:AFAV... --trust keys/trust.json
    """


def write_qr_png(text: str, path: Path, scale: int = 8) -> None:
    """The QR image of a pass, at error correction level M as the format requires."""
    segno.make(text, error="m", micro=False, boost_error=False).save(
        str(path), kind="png", scale=scale, border=4
    )


@pass_group.command("issue")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The registry signing key (PEM) to sign with.",
)
@click.option("--subject", required=True, help="Pseudonymous subject id: 24 hex digits.")
@click.option(
    "--status",
    required=True,
    type=click.Choice([s.label for s in Status]),
    help="The status colour the pass carries.",
)
@click.option(
    "--doses",
    type=click.IntRange(0, passes.MAX_DOSES),
    default=None,
    help="Vaccine doses (default: 2 for green, 1 for yellow, 0 otherwise).",
)
@click.option(
    "--valid-for",
    type=Duration(),
    default="30d",
    show_default=True,
    help="How long the pass stays valid, e.g. 30d, 12h, 1d12h.",
)
@click.option(
    "--issued-at",
    type=Timestamp(),
    default=None,
    help="Issue time (RFC 3339 or Unix seconds); default now.",
)
@click.option(
    "--png",
    "png_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the pass as a QR code image.",
)
def issue(
    key_path: Path,
    subject: str,
    status: str,
    doses: int | None,
    valid_for: int,
    issued_at: float | None,
    png_path: Path | None,
) -> None:
    """Sign a pass and print its text.

    \b
    Example:
      pintu pass issue --key keys/signing-1a2b3c4d.pem --subject 00112233445566778899aabb \\
          --status yellow --valid-for 7d --png pass.png
    """
    try:
        key = SigningKey.load(key_path)
    except ProtocolError as err:
        raise click.BadParameter(str(err), param_hint="--key") from err
    try:
        subject_id = bytes.fromhex(subject)
    except ValueError:
        subject_id = b""
    if len(subject_id) != passes.SUBJECT_BYTES:
        raise click.BadParameter(
            f"expected {passes.SUBJECT_BYTES * 2} hex digits, got {subject!r}",
            param_hint="--subject",
        )
    colour = Status.parse(status)
    start = int(time.time() if issued_at is None else issued_at)
    text = passes.issue(
        key,
        subject_id,
        colour,
        DEFAULT_DOSES[colour] if doses is None else doses,
        start,
        start + valid_for,
    )
    if png_path is not None:
        write_qr_png(text, png_path)
    click.echo(text)


def _texts_from_image(image: Path, backend: str) -> list[str]:
    # Imported here: issuing and verifying text needs no decoder libraries.
    from firmware.decoder import load_image, make_decoder
    from firmware.errors import FirmwareError

    try:
        return make_decoder(backend).decode(load_image(image))
    except FirmwareError as err:
        raise click.BadParameter(str(err), param_hint="--image") from err


@pass_group.command("verify")
@click.argument("text", required=False)
@click.option(
    "--image",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read the pass from a QR code image instead of TEXT.",
)
@click.option(
    "--trust",
    "trust_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The trust list (JSON) naming the keys to believe.",
)
@click.option(
    "--at",
    "at",
    type=Timestamp(),
    default=None,
    help="Check validity at this time (RFC 3339 or Unix seconds) instead of now.",
)
@click.option(
    "--backend",
    type=click.Choice(["zxingcpp", "pyzbar"]),
    default="zxingcpp",
    show_default=True,
    help="QR decoder for --image.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per pass.")
def verify(
    text: str | None,
    image: Path | None,
    trust_path: Path,
    at: float | None,
    backend: str,
    as_json: bool,
) -> None:
    """Check a pass the way a door does: format, key, signature and validity period.

    Exit status: 0 for a valid pass, 1 for an invalid one, 2 for a usage error.

    \b
    Example:
      pintu pass verify --image pass.png --trust keys/trust.json --json
    """
    if (text is None) == (image is None):
        raise click.UsageError("give either TEXT or --image, not both or neither")
    try:
        trust = TrustList.load(trust_path)
    except ProtocolError as err:
        raise click.BadParameter(str(err), param_hint="--trust") from err
    texts = [text] if text is not None else _texts_from_image(image, backend)  # type: ignore[arg-type]
    if not texts:
        if as_json:
            echo_json({"ok": False, "reason": "no_code", "message": "no QR code found"})
        else:
            click.echo("invalid: no QR code found in the image")
        raise SystemExit(1)
    all_ok = True
    for item in texts:
        verdict = passes.verify(item, trust, now=at)
        all_ok = all_ok and verdict.ok
        if as_json:
            echo_json(verdict.to_json())
        elif verdict.ok and verdict.pass_ is not None:
            p = verdict.pass_
            expires = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(p.expires_at))
            click.echo(
                f"valid: {p.status.label} pass, {p.doses} dose(s), subject {p.subject_hex}, "
                f"key {p.kid.hex()}, expires {expires}"
            )
        else:
            click.echo(f"invalid: {verdict.reason.value}: {verdict.message}")
    raise SystemExit(0 if all_ok else 1)
