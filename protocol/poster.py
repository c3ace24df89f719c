"""A printable poster for a door: the facility, the door, its QR code and how to check in.

An A4 page at 150 dpi drawn with Pillow, as PNG or a one-page PDF. The QR code holds the
door's URI ``pintu-door:<facility>/<door>`` at error correction level M, large enough to
scan across a doorway. The registry serves these posters and the technician's tools print
them; both draw them here, so a door looks the same whichever made its poster.

A poster speaks the facility's language, or two: the first language leads and the second
follows each line in smaller grey type. Every word comes from the shared catalogs
(``runtime.i18n``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import segno
from PIL import Image, ImageDraw, ImageFont

from protocol.errors import ProtocolError
from protocol.ids import is_id
from runtime.i18n import LANGUAGES, N_, Language


class PosterError(ProtocolError):
    """A poster cannot be drawn: a bad id or direction, or names too long for the page."""


DPI = 150
PAGE = (1240, 1754)  # A4 at 150 dpi
MARGIN = 90
QR_SIZE = 800
BAND = (0, 105, 92)  # dark enough for white text on a cheap printer
INK = (20, 20, 20)
GREY = (95, 95, 95)
DOOR_SCHEME = "pintu-door:"

TITLE = N_("PINTU CHECK-IN")
HOW = N_("How to check in")
STEPS = (
    N_("Open your Pintu pass on your phone, or take out your printed pass."),
    N_("Hold it up to the camera at the door until the light comes on."),
    N_(
        "Green: come in. Yellow: come in, and keep to the health protocol. "
        "Red or black: wait for the staff."
    ),
    N_("No phone? The staff check you in with your NIK and name."),
    N_("Check in at the entrance and check out at the exit, every time."),
)
LABELS = {"entry": N_("ENTRANCE"), "exit": N_("EXIT"), "both": N_("ENTRANCE AND EXIT")}


@dataclass(frozen=True)
class DoorSign:
    facility_id: str
    facility_name: str
    door_id: str
    door_name: str
    direction: str = "both"
    # The poster's languages, the leading one first: ("id",), ("en",), ("id", "en")...
    languages: tuple[str, ...] = ("id",)


def door_uri(facility_id: str, door_id: str) -> str:
    """What a door's QR code holds; ids never contain '/', so it splits unambiguously."""
    for what, value in (("facility", facility_id), ("door", door_id)):
        if not is_id(value):
            raise PosterError(f"not a valid {what} id: {value!r}")
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


def _qr(data: str, size: int) -> Image.Image:
    code = segno.make(data, error="m", micro=False)
    modules, _ = code.symbol_size(scale=1, border=4)
    buffer = io.BytesIO()
    code.save(buffer, kind="png", scale=max(1, size // modules), border=4)
    buffer.seek(0)
    with Image.open(buffer) as img:
        return img.convert("RGB")


def _languages(sign: DoorSign) -> list[Language]:
    if not sign.languages or len(sign.languages) > 2:
        raise PosterError("a poster speaks one language or two")
    unknown = [code for code in sign.languages if code not in LANGUAGES]
    if unknown or len(set(sign.languages)) != len(sign.languages):
        raise PosterError(f"languages must be one or two of {', '.join(LANGUAGES)}")
    return [Language.of(code) for code in sign.languages]


def render(sign: DoorSign) -> Image.Image:
    """The poster as an RGB image."""
    uri = door_uri(sign.facility_id, sign.door_id)
    if sign.direction not in LABELS:
        raise PosterError(f"direction must be entry, exit or both, not {sign.direction!r}")
    first, *others = _languages(sign)
    second = others[0] if others else None
    # Two languages take more lines: the code and the type are a little smaller.
    qr_size, body_size, line = (QR_SIZE, 30, 40) if second is None else (600, 26, 33)
    page = Image.new("RGB", PAGE, "white")
    draw = ImageDraw.Draw(page)
    centre = PAGE[0] // 2
    width = PAGE[0] - 2 * MARGIN
    draw.rectangle((0, 0, PAGE[0], 150), fill=BAND)
    draw.text((centre, 75), first.gettext(TITLE), font=_font(64), fill="white", anchor="mm")
    y = 185
    name_font = _font(56)
    for text_line in _wrap(draw, sign.facility_name, name_font, width)[:2]:
        draw.text((centre, y), text_line, font=name_font, fill=INK, anchor="mt")
        y += 70
    door_font = _font(44)
    label = first.gettext(LABELS[sign.direction])
    if second is not None:
        label = f"{label} / {second.gettext(LABELS[sign.direction])}"
    for text_line in _wrap(draw, f"{label}: {sign.door_name}", door_font, width)[:2]:
        draw.text((centre, y + 5), text_line, font=door_font, fill=BAND, anchor="mt")
        y += 56
    y += 20
    code = _qr(uri, qr_size)
    page.paste(code, ((PAGE[0] - code.width) // 2, y))
    y += code.height + 5
    draw.text((centre, y), uri, font=_font(26), fill=GREY, anchor="mt")
    y += 55
    heading = first.gettext(HOW)
    if second is not None:
        heading = f"{heading} / {second.gettext(HOW)}"
    draw.text((MARGIN, y), heading, font=_font(40), fill=INK)
    y += 56
    body = _font(body_size)
    for number, step in enumerate(STEPS, 1):
        draw.text((MARGIN, y), f"{number}.", font=body, fill=BAND)
        for text_line in _wrap(draw, first.gettext(step), body, width - 50):
            draw.text((MARGIN + 50, y), text_line, font=body, fill=INK)
            y += line
        if second is not None:
            for text_line in _wrap(draw, second.gettext(step), body, width - 50):
                draw.text((MARGIN + 50, y), text_line, font=body, fill=GREY)
                y += line
        y += 6 if second is None else 10
    if y > PAGE[1] - MARGIN // 2:
        raise PosterError("the names are too long for the page; shorten them")
    return page


def poster_bytes(sign: DoorSign, kind: Literal["png", "pdf"] = "png") -> bytes:
    """The poster encoded as a PNG image or a one-page A4 PDF."""
    page = render(sign)
    buffer = io.BytesIO()
    if kind == "pdf":
        page.save(
            buffer, format="PDF", resolution=DPI, title=f"{sign.facility_name}: {sign.door_name}"
        )
    else:
        page.save(buffer, format="PNG", dpi=(DPI, DPI), optimize=True)
    return buffer.getvalue()
