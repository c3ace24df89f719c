"""A printable poster for a door: the facility, the door, its QR code and how to use it.

An A4 page at 150 dpi drawn with Pillow, as PNG or a one-page PDF. The QR code holds the
door's address at the registry, ``<registry>/d/<facility>/<door>`` (:func:`door_address`),
at error correction level M: any phone's camera app opens it, so a visitor checks in with
the wallet without an app of Pintu's own. The same code is printed on every poster of the
door whatever its kind; the steps beneath it say which way the door takes: a phone
scanning the poster, a pass held up to the door's camera, or either. The registry serves
these posters and the technician's tools print them; both draw them here, so a door looks
the same whichever made its poster.

A poster speaks the facility's language, or two: the first language leads and the second
follows each line in smaller grey type. Every word comes from the shared catalogs
(``runtime.i18n``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

import segno
from PIL import Image, ImageDraw, ImageFont

from protocol.errors import ProtocolError
from protocol.ids import is_id
from runtime.i18n import LANGUAGES, N_, Language


class PosterError(ProtocolError):
    """A poster cannot be drawn: a bad id, address, direction or kind, or names too long for
    the page."""


DPI = 150
PAGE = (1240, 1754)  # A4 at 150 dpi
MARGIN = 90
QR_SIZE = 800
# Phones read the code from arm's length, not across the doorway: it may shrink to about
# 5.5 cm, its margin included, to leave room for the steps of a door that takes both ways.
QR_MIN = 330
BAND = (0, 105, 92)  # dark enough for white text on a cheap printer
INK = (20, 20, 20)
GREY = (95, 95, 95)
# A door's address is <registry>/d/<facility>/<door>; the registry answers it with the
# page a phone checks in on.
DOOR_PATH: Final = "/d/"

Direction = Literal["entry", "exit", "both"]
# The ways a door takes a pass, as the registry's door kinds: a door node's camera reads
# the pass, a phone scans the door's poster, or either.
Ways = Literal["camera", "poster", "both"]
DIRECTIONS: Final[tuple[Direction, ...]] = ("entry", "exit", "both")
WAYS: Final[tuple[Ways, ...]] = ("camera", "poster", "both")

TITLE = N_("PINTU CHECK-IN")
LABELS = {"entry": N_("ENTRANCE"), "exit": N_("EXIT"), "both": N_("ENTRANCE AND EXIT")}
HOW = {
    "entry": N_("How to check in"),
    "exit": N_("How to check out"),
    "both": N_("How to check in and out"),
}
# A door that takes both ways heads each way's steps.
WITH_PHONE = N_("With your phone's camera")
WITH_CAMERA = N_("With your pass at the door's camera")
PHONE_SCAN = N_("Point your phone's camera at this code and open the link it shows.")
PHONE_PASS = {
    "entry": N_("Your Pintu pass checks you in: show the staff the colour on your screen."),
    "exit": N_("Your Pintu pass checks you out: show the staff your screen as you leave."),
    "both": N_("Your Pintu pass checks you in or out: show the staff the colour on your screen."),
}
CAMERA_PASS = N_("Open your Pintu pass on your phone, or take out your printed pass.")
CAMERA_HOLD = N_("Hold it up to the camera at the door until the light comes on.")
CAMERA_LEAVING = N_("On the way out the light turns green: you are checked out.")
COLOURS = N_(
    "Green: come in. Yellow: come in, and keep to the health protocol. "
    "Red or black: wait for the staff."
)
# Without a pass the staff check a visitor by NIK and name. At a poster-only door a printed
# pass is no help: only a pass on the phone is.
NO_PHONE_PASS = {
    "entry": N_("No Pintu pass on your phone? The staff check you in with your NIK and name."),
    "exit": N_("No Pintu pass on your phone? The staff check you out with your NIK and name."),
    "both": N_(
        "No Pintu pass on your phone? The staff check you in or out with your NIK and name."
    ),
}
NO_PASS = {
    "entry": N_("No pass with you? The staff check you in with your NIK and name."),
    "exit": N_("No pass with you? The staff check you out with your NIK and name."),
    "both": N_("No pass with you? The staff check you in or out with your NIK and name."),
}
EVERY_TIME = N_("Check in at the entrance and check out at the exit, every time.")


@dataclass(frozen=True, kw_only=True)
class DoorSign:
    """What a door's poster says: its names, its address and the ways it takes a pass."""

    facility_id: str
    facility_name: str
    door_id: str
    door_name: str
    # The registry's public address (``https://registry.example.id``): the poster's code
    # holds the door's address under it.
    base_url: str
    direction: str = "both"
    # camera: a door node reads the pass; poster: a phone scans the poster; both: either.
    ways: str = "camera"
    # The poster's languages, the leading one first: ("id",), ("en",), ("id", "en")...
    languages: tuple[str, ...] = ("id",)

    @property
    def address(self) -> str:
        """What the poster's QR code holds."""
        return door_address(self.base_url, self.facility_id, self.door_id)


@dataclass(frozen=True)
class Section:
    """Numbered steps, under a heading when a poster shows more than one way."""

    heading: str | None
    steps: tuple[str, ...]


@dataclass(frozen=True)
class Instructions:
    """A poster's words beneath its code, as catalog message ids (untranslated)."""

    heading: str
    sections: tuple[Section, ...]
    # Lines for every way, after the steps: the colours, the staff's check, every time.
    notes: tuple[str, ...]

    def messages(self) -> list[str]:
        """Every message, in the order the poster prints them."""
        found = [self.heading]
        for section in self.sections:
            found += [section.heading] if section.heading else []
            found += section.steps
        return found + list(self.notes)


def door_address(base_url: str, facility_id: str, door_id: str) -> str:
    """The address a door's QR code holds: ``<base_url>/d/<facility_id>/<door_id>``.

    ``base_url`` is the registry's public address: absolute http or https, no query or
    fragment, a trailing slash dropped. The ids never contain "/" or anything a URL would
    escape, so the address splits back unambiguously.
    """
    for what, value in (("facility", facility_id), ("door", door_id)):
        if not is_id(value):
            raise PosterError(f"not a valid {what} id: {value!r}")
    base = _base(base_url)
    return f"{base}{DOOR_PATH}{facility_id}/{door_id}"


def _base(base_url: str) -> str:
    bad = PosterError(
        f"not a registry address: {base_url!r}; give its public URL, "
        "such as https://registry.example.id"
    )
    if not base_url.isascii() or any(c.isspace() or not c.isprintable() for c in base_url):
        raise bad
    if "?" in base_url or "#" in base_url:
        raise PosterError(f"the registry address {base_url!r} may hold no query or fragment")
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as err:
        raise bad from err
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise bad
    return base_url.rstrip("/")


def instructions(direction: str, ways: str) -> Instructions:
    """The words beneath a door's code: how to check in (or out) the ways the door takes."""
    if direction not in DIRECTIONS:
        raise PosterError(f"direction must be entry, exit or both, not {direction!r}")
    if ways not in WAYS:
        raise PosterError(f"a door's kind must be camera, poster or both, not {ways!r}")
    phone = (PHONE_SCAN, PHONE_PASS[direction])
    camera = (CAMERA_PASS, CAMERA_HOLD) + ((CAMERA_LEAVING,) if direction != "entry" else ())
    sections: tuple[Section, ...]
    if ways == "poster":
        sections = (Section(None, phone),)
    elif ways == "camera":
        sections = (Section(None, camera),)
    else:
        sections = (Section(WITH_PHONE, phone), Section(WITH_CAMERA, camera))
    colours = (COLOURS,) if direction != "exit" else ()
    no_pass = (NO_PHONE_PASS if ways == "poster" else NO_PASS)[direction]
    return Instructions(HOW[direction], sections, (*colours, no_pass, EVERY_TIME))


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int) -> list[str]:
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


@dataclass(frozen=True)
class _Text:
    """One line of text to draw, ``dy`` below the top of its block; no text: a bullet."""

    x: int
    dy: int
    text: str | None
    font: Font
    fill: tuple[int, int, int]


class _Block:
    """The words beneath the code, laid out before anything is drawn: the code takes the
    room they leave. A door that takes both ways has its two ways side by side."""

    def __init__(
        self, draw: ImageDraw.ImageDraw, first: Language, second: Language | None, size: int
    ) -> None:
        self.draw = draw
        self.first = first
        self.second = second
        self.texts: list[_Text] = []
        self.height = 0
        self.size = size
        self.body = _font(size)
        self.line = round(size * 1.3)
        self.gap = 6 if second is None else 10

    def both(self, message: str) -> str:
        text = self.first.gettext(message)
        return text if self.second is None else f"{text} / {self.second.gettext(message)}"

    def heading(self, message: str) -> int:
        font = _font(40)
        dy = 0
        for text_line in _wrap(self.draw, self.both(message), font, PAGE[0] - 2 * MARGIN):
            self.texts.append(_Text(MARGIN, dy, text_line, font, INK))
            dy += 52
        return dy

    def item(self, marker: str | None, message: str, x: int, width: int, dy: int) -> int:
        self.texts.append(_Text(x, dy, marker, self.body, BAND))
        indent = 50 if marker is None or len(marker) < 3 else 60
        languages = [(self.first, INK)] + ([(self.second, GREY)] if self.second else [])
        for language, fill in languages:
            for text_line in _wrap(self.draw, language.gettext(message), self.body, width - indent):
                self.texts.append(_Text(x + indent, dy, text_line, self.body, fill))
                dy += self.line
        return dy + self.gap

    def section(self, section: Section, x: int, width: int, dy: int) -> int:
        if section.heading is not None:
            # A way's heading: each language on lines of its own, as narrow as a column is.
            size = 32 if self.second is None else 28
            font = _font(size)
            dy += 4
            languages = [(self.first, BAND)] + ([(self.second, GREY)] if self.second else [])
            for language, fill in languages:
                for text_line in _wrap(self.draw, language.gettext(section.heading), font, width):
                    self.texts.append(_Text(x, dy, text_line, font, fill))
                    dy += round(size * 1.25)
            dy += 4
        for number, step in enumerate(section.steps, 1):
            dy = self.item(f"{number}.", step, x, width, dy)
        return dy

    def lay_out(self, words: Instructions) -> None:
        width = PAGE[0] - 2 * MARGIN
        dy = self.heading(words.heading) + 4
        gutter = 40
        column = (width - gutter * (len(words.sections) - 1)) // len(words.sections)
        ends = [
            self.section(section, MARGIN + i * (column + gutter), column, dy)
            for i, section in enumerate(words.sections)
        ]
        dy = max(ends) + 6
        for note in words.notes:
            dy = self.item(None, note, MARGIN, width, dy)
        self.height = dy

    def draw_at(self, y: int) -> None:
        for t in self.texts:
            if t.text is not None:
                self.draw.text((t.x, y + t.dy), t.text, font=t.font, fill=t.fill)
                continue
            # A bullet: drawn, as the default font has no glyph for one.
            r, middle = 6, y + t.dy + round(self.size * 0.6)
            self.draw.ellipse((t.x + 8 - r, middle - r, t.x + 8 + r, middle + r), fill=t.fill)


def _fitting(draw: ImageDraw.ImageDraw, text: str, size: int, width: int) -> Font:
    """The largest font up to ``size`` that prints ``text`` on one line of ``width``."""
    while size > 14 and draw.textlength(text, font=_font(size)) > width:
        size -= 2
    return _font(size)


def render(sign: DoorSign) -> Image.Image:
    """The poster as an RGB image."""
    address = sign.address
    if sign.direction not in LABELS:
        raise PosterError(f"direction must be entry, exit or both, not {sign.direction!r}")
    words = instructions(sign.direction, sign.ways)
    first, *others = _languages(sign)
    second = others[0] if others else None
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
    # The code takes the room the words leave, up to its full size; the words get smaller
    # before the code gets too small to read.
    largest = QR_SIZE if second is None else 600
    for size in (30, 28, 26) if second is None else (26, 24, 22):
        block = _Block(draw, first, second, size)
        block.lay_out(words)
        room = PAGE[1] - MARGIN // 2 - y - 60 - block.height
        if room >= QR_MIN:
            break
    else:
        raise PosterError("the names are too long for the page; shorten them")
    code = _qr(address, min(largest, room))
    page.paste(code, ((PAGE[0] - code.width) // 2, y))
    y += code.height + 5
    # The address is printed under the code for whoever types it in.
    draw.text((centre, y), address, font=_fitting(draw, address, 26, width), fill=GREY, anchor="mt")
    y += 55
    block.draw_at(y)
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
