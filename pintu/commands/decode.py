"""``pintu decode``: read QR codes from image files, a technician's first check of a camera."""

from __future__ import annotations

import time
from pathlib import Path

import click

from pintu.commands.common import echo_json


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--backend",
    type=click.Choice(["zxingcpp", "pyzbar"]),
    default="zxingcpp",
    show_default=True,
    help="QR decoder to use.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
def decode(images: tuple[Path, ...], backend: str, as_json: bool) -> None:
    """Decode the QR codes in image files.

    An unreadable file gives an error line and the run goes on; the exit status is 1
    if any file could not be read.

    \b
    Example:
      pintu decode --json frames/*.png
    """
    from firmware.decoder import load_image, make_decoder
    from firmware.errors import FirmwareError

    try:
        decoder = make_decoder(backend)
    except FirmwareError as err:
        raise click.ClickException(str(err)) from err
    failed = 0
    for path in images:
        try:
            frame = load_image(path)
        except FirmwareError as err:
            failed += 1
            if as_json:
                echo_json({"path": str(path), "error": str(err)})
            else:
                click.echo(f"{path}: error: {err}", err=True)
            continue
        start = time.perf_counter()
        texts = decoder.decode(frame)
        ms = (time.perf_counter() - start) * 1000
        if as_json:
            echo_json({"path": str(path), "texts": texts, "ms": round(ms, 3)})
        elif texts:
            for text in texts:
                click.echo(f"{path}: {text}")
        else:
            click.echo(f"{path}: no QR code ({ms:.1f} ms)")
    raise SystemExit(1 if failed else 0)
