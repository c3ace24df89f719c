"""Printable door posters: the facility, the door, its QR code and how to check in.

A poster is an A4 page drawn at 150 dpi with Pillow, as PNG or as a one-page PDF. Its QR
code holds the door's URI (``pintu-door:<facility>/<door>``) at error correction level M,
large enough to be read from across a doorway.
"""

from __future__ import annotations

import io
from typing import Literal

import segno
from PIL import Image, ImageDraw, ImageFont

from registry.records import Door, Facility

DPI = 150
PAGE = (1240, 1754)  # A4 at 150 dpi
MARGIN = 90
QR_SIZE = 820
BAND = (0, 121, 107)  # a deep teal, dark enough for white text on cheap printers
INK = (20, 20, 20)
DOOR_SCHEME = "pintu-door:"

HOW_TO = (
    "How to check in",
    "1. Open your Pintu pass on your phone, or take out your printed pass.",
    "2. Hold it up to the camera at this door until the light comes on.",
    "3. Green: go ahead. Red or black: please wait for the staff.",
    "No phone? The staff check you in with your NIK and name.",
    "Check in at the entrance and check out at the exit, every time.",
)


def door_uri(facility_id: str, door_id: str) -> str:
    """What a door's QR code holds. Ids never contain '/', so the split is unambiguous."""
    return f"{DOOR_SCHEME}{facility_id}/{door_id}"


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _wrap(
    draw: ImageDraw.ImageDraw,
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    width: int,
) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def _qr_image(data: str, size: int) -> Image.Image:
    qr = segno.make(data, error="m", micro=False)
    width, _ = qr.symbol_size(scale=1, border=4)
    buffer = io.BytesIO()
    qr.save(buffer, kind="png", scale=max(1, size // width), border=4)
    buffer.seek(0)
    with Image.open(buffer) as img:
        return img.convert("RGB")


def render(facility: Facility, door: Door) -> Image.Image:
    """The poster for one door of a facility, as an RGB image."""
    page = Image.new("RGB", PAGE, "white")
    draw = ImageDraw.Draw(page)
    width = PAGE[0] - 2 * MARGIN
    # Coloured band: what the poster is, readable from afar.
    draw.rectangle((0, 0, PAGE[0], 150), fill=BAND)
    title = _font(64)
    draw.text((PAGE[0] // 2, 75), "PINTU CHECK-IN", font=title, fill="white", anchor="mm")
    y = 190
    name_font = _font(58)
    for line in _wrap(draw, facility.name, name_font, width)[:2]:
        draw.text((PAGE[0] // 2, y), line, font=name_font, fill=INK, anchor="mt")
        y += 72
    label = "ENTRANCE" if door.direction == "entrance" else "EXIT"
    door_font = _font(44)
    draw.text(
        (PAGE[0] // 2, y + 10), f"{label}: {door.name}"[:60], font=door_font, fill=BAND, anchor="mt"
    )
    y += 80
    qr = _qr_image(door_uri(facility.id, door.door_id), QR_SIZE)
    page.paste(qr, ((PAGE[0] - qr.width) // 2, y))
    y += qr.height + 10
    small = _font(26)
    draw.text(
        (PAGE[0] // 2, y),
        f"door {facility.id}/{door.door_id}",
        font=small,
        fill=(90, 90, 90),
        anchor="mt",
    )
    y += 60
    heading, *steps = HOW_TO
    draw.text((MARGIN, y), heading, font=_font(40), fill=INK)
    y += 60
    body = _font(30)
    for step in steps:
        for line in _wrap(draw, step, body, width):
            draw.text((MARGIN, y), line, font=body, fill=INK)
            y += 40
        y += 8
    return page


def poster_bytes(facility: Facility, door: Door, kind: Literal["png", "pdf"]) -> bytes:
    """The poster encoded as a PNG image or a one-page A4 PDF."""
    page = render(facility, door)
    buffer = io.BytesIO()
    if kind == "pdf":
        page.save(buffer, format="PDF", resolution=DPI, title=f"{facility.name}: {door.name}")
    else:
        page.save(buffer, format="PNG", dpi=(DPI, DPI), optimize=True)
    return buffer.getvalue()
