"""``pintu decode``: read QR codes from image files, a technician's first check of a camera."""

from __future__ import annotations

import time
from pathlib import Path

import click

from pintu.commands.common import echo_json

# A technician's photo is known to hold a code and is not a camera stream: escalation
# gets every photo and a generous budget.
PHOTO_BUDGET_MS = 500.0


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--backend",
    type=click.Choice(["escalating", "zxingcpp", "pyzbar"]),
    default="escalating",
    show_default=True,
    help="QR decoder to use: 'escalating' is the door's, trying inversion (dark mode), "
    "enlarging, sharpening, contrast stretch and zbar when zxing-cpp alone reads nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
def decode(images: tuple[Path, ...], backend: str, as_json: bool) -> None:
    """Decode the QR codes in image files, as a door would, to test a photo of a problem pass.

    With the default decoder, the line says which escalation step read the code, if
    zxing-cpp's first look did not. An unreadable file gives an error line and the run
    goes on; the exit status is 1 if any file could not be read.

    \b
    Example:
      pintu decode --json frames/*.png
    """
    from firmware.decoder import Decoder, load_image, make_decoder
    from firmware.errors import FirmwareError

    try:
        decoder: Decoder
        if backend == "escalating":
            from firmware.escalate import EscalatingDecoder

            decoder = EscalatingDecoder(budget_ms=PHOTO_BUDGET_MS, always=True)
        else:
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
        stats = getattr(decoder, "stats", None)
        before = dict(stats.read_by) if stats is not None else {}
        start = time.perf_counter()
        texts = decoder.decode(frame)
        ms = (time.perf_counter() - start) * 1000
        step = None
        if stats is not None:
            step = next((k for k, v in stats.read_by.items() if v != before.get(k, 0)), None)
        if as_json:
            doc: dict[str, object] = {"path": str(path), "texts": texts, "ms": round(ms, 3)}
            if backend == "escalating":
                doc["read_by"] = step or ("zxing-cpp" if texts else None)
            echo_json(doc)
        elif texts:
            how = f" (read by: {step})" if step else ""
            for text in texts:
                click.echo(f"{path}: {text}{how}")
        else:
            click.echo(f"{path}: no QR code ({ms:.1f} ms)")
    raise SystemExit(1 if failed else 0)
