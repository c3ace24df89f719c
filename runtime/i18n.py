"""One translation layer for every part of Pintu a person reads.

The catalogs are gettext ``.po`` files kept with Babel (``babel.cfg`` says where the
strings are; ``make catalogs`` extracts and updates them), one per language under
``runtime/locale``. They are compiled when first used, in memory, so a fresh clone needs
no build step. Python code marks text with ``gettext``/``ngettext`` from a
:class:`Language`; templates with Jinja2's i18n extension; the dashboard's script gets
the messages found in ``.js`` files as a JSON object (:func:`js_catalog`).

A page's language is, in order: the one the person chose (a cookie), the first one their
browser asks for that Pintu speaks (``Accept-Language``), the facility's default.
Dates, times and numbers are formatted for the language with Babel (CLDR).
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from functools import cache
from pathlib import Path
from typing import Final, Literal

from babel import Locale
from babel.dates import format_date, format_datetime, format_time
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

logger = logging.getLogger(__name__)

LanguageCode = Literal["id", "en"]
LANGUAGES: Final[tuple[LanguageCode, ...]] = ("id", "en")
DEFAULT_LANGUAGE: Final[LanguageCode] = "id"
DOMAIN: Final = "pintu"
LOCALE_DIR: Final = Path(__file__).resolve().parent / "locale"
# The name of each language in itself, for a language menu.
NATIVE_NAMES: Final[dict[LanguageCode, str]] = {"id": "Bahasa Indonesia", "en": "English"}
# The locale Babel (and the browser's Intl) formats with for each language.
LOCALES: Final[dict[LanguageCode, str]] = {"id": "id_ID", "en": "en_GB"}

# An Accept-Language header comes from anyone: read at most this much of it.
_MAX_HEADER = 512
_MAX_RANGES = 20
_RANGE = re.compile(r"^([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*$")
_ALIASES: Final[dict[str, str]] = {"in": "id"}
_QUALITY = re.compile(r"^q=(0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def parse_language(value: str | None) -> LanguageCode | None:
    """``value`` if it names a language Pintu speaks ("id", "en", "id-ID"...), else None."""
    if not value or len(value) > 35:
        return None
    match = _RANGE.match(value.strip())
    if match is None:
        return None
    primary = match.group(1).lower()
    # "in" is Indonesian's withdrawn ISO 639 code, still sent by some older Android browsers.
    primary = _ALIASES.get(primary, primary)
    for language in LANGUAGES:
        if primary == language:
            return language
    return None


def accepted(header: str | None) -> list[LanguageCode]:
    """The languages Pintu speaks that an ``Accept-Language`` header asks for, best first.

    Malformed ranges are skipped, not guessed at; ``*`` and unknown languages add nothing.
    """
    if not header:
        return []
    ranked: list[tuple[float, int, LanguageCode]] = []
    for position, item in enumerate(header[:_MAX_HEADER].split(",")[:_MAX_RANGES]):
        tag, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            found = _QUALITY.match(param.replace(" ", ""))
            if found is None:
                quality = -1.0
                break
            quality = float(found.group(1))
        language = parse_language(tag)
        if language is not None and quality > 0:
            ranked.append((-quality, position, language))
    result: list[LanguageCode] = []
    for _, _, language in sorted(ranked):
        if language not in result:
            result.append(language)
    return result


def negotiate(
    chosen: str | None, accept_language: str | None, default: str | None = None
) -> LanguageCode:
    """The language to answer in: the person's choice, their browser's, the facility's."""
    for candidate in (parse_language(chosen), *accepted(accept_language)):
        if candidate is not None:
            return candidate
    return parse_language(default) or DEFAULT_LANGUAGE


@cache
def catalog(language: LanguageCode) -> Catalog:
    """The language's catalog as read from its ``.po`` file."""
    with po_path(language).open("rb") as handle:
        return read_po(handle, locale=language, domain=DOMAIN)


@cache
def translations(language: LanguageCode) -> Translations:
    """The language's messages, compiled in memory from its ``.po`` file.

    Fuzzy entries are left out, as ``pybabel compile`` leaves them out: a guess is never
    shown as a translation.
    """
    buffer = io.BytesIO()
    write_mo(buffer, catalog(language), use_fuzzy=False)
    buffer.seek(0)
    return Translations(fp=buffer, domain=DOMAIN)


@cache
def js_catalog(language: LanguageCode, under: str = "") -> dict[str, str | list[str]]:
    """The messages of the scripts (those in the folder ``under`` only, if given):
    ``msgid -> text`` (a list for plurals)."""
    result: dict[str, str | list[str]] = {}
    for message in catalog(language):
        if not message.id or message.fuzzy:
            continue
        if not any(
            path.endswith(".js") and path.startswith(under) for path, _ in message.locations
        ):
            continue
        if isinstance(message.id, tuple):
            strings = message.string if isinstance(message.string, tuple) else ()
            if all(strings):
                result["\x00".join(message.id)] = list(strings)
        elif message.string:
            result[str(message.id)] = str(message.string)
    return result


@dataclass(frozen=True)
class Language:
    """Everything needed to speak to a person in one language."""

    code: LanguageCode

    @classmethod
    def of(cls, code: str | None) -> Language:
        return cls(parse_language(code) or DEFAULT_LANGUAGE)

    @property
    def locale(self) -> Locale:
        return Locale.parse(LOCALES[self.code])

    @property
    def tag(self) -> str:
        """The BCP 47 tag for ``<html lang>`` and the browser's Intl."""
        return LOCALES[self.code].replace("_", "-")

    def gettext(self, message: str) -> str:
        return translations(self.code).ugettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return translations(self.code).ungettext(singular, plural, n)

    def number(self, value: float) -> str:
        return format_decimal(value, locale=self.locale)

    def format_date(self, value: date, width: str = "long") -> str:
        """``width`` is Babel's: short, medium, long or full."""
        return format_date(value, format=width, locale=self.locale)

    def format_time(self, value: datetime, tz: tzinfo | None = None, width: str = "medium") -> str:
        return format_time(value, format=width, tzinfo=tz, locale=self.locale)

    def format_datetime(
        self, value: datetime, tz: tzinfo | None = None, width: str = "medium"
    ) -> str:
        return format_datetime(value, format=width, tzinfo=tz, locale=self.locale)


def N_(message: str) -> str:
    """Marks ``message`` for the catalogs where it cannot be translated yet."""
    return message
