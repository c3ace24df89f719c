"""The translation catalogs: complete, compiled, and used the way a person sees them.

A string marked in the code, a template or the dashboard's script but missing from a
language's catalog (or only fuzzily translated) fails here, as does a translation that
drops or renames one of its placeholders.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from runtime.i18n import LANGUAGES, Language, accepted, js_catalog, negotiate, po_path

ROOT = Path(__file__).resolve().parents[2]
PYBABEL = Path(sys.executable).with_name("pybabel")
_PLACEHOLDER = re.compile(r"\{\w+\}|%\(\w+\)s")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """Every string marked for translation now, extracted afresh with babel.cfg."""
    out = tmp_path_factory.mktemp("pot") / "pintu.pot"
    subprocess.run(
        [str(PYBABEL), "extract", "-F", "babel.cfg", "-o", str(out), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with out.open("rb") as handle:
        return read_po(handle)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_marked_string_is_translated(extracted: Catalog, language: str) -> None:
    with po_path(language).open("rb") as handle:
        catalog = read_po(handle, locale=language)
    missing, fuzzy, broken = [], [], []
    for message in extracted:
        if not message.id:
            continue
        entry = catalog.get(message.id)
        strings = entry.string if entry is not None else ""
        texts = list(strings) if isinstance(strings, tuple) else [strings]
        if entry is None or not all(texts):
            missing.append(message.id)
            continue
        if entry.fuzzy:
            fuzzy.append(message.id)
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        wanted = set(_PLACEHOLDER.findall(ids[-1]))
        if any(set(_PLACEHOLDER.findall(text)) != wanted for text in texts):
            broken.append(message.id)
    assert not missing, f"not in the {language} catalog (run make catalogs): {missing}"
    assert not fuzzy, f"fuzzy in the {language} catalog: {fuzzy}"
    assert not broken, f"placeholders differ in the {language} catalog: {broken}"


def test_the_catalogs_compile_with_nothing_left_out(tmp_path: Path) -> None:
    """``pybabel compile --statistics``: each catalog 100 % translated, no errors."""
    for language in LANGUAGES:
        target = tmp_path / language / "LC_MESSAGES"
        target.mkdir(parents=True)
        result = subprocess.run(
            [
                str(PYBABEL),
                "compile",
                "--statistics",
                "-D",
                "pintu",
                "-l",
                language,
                "-i",
                str(po_path(language)),
                "-o",
                str(target / "pintu.mo"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        report = result.stdout + result.stderr
        assert result.returncode == 0, report
        assert "error" not in report.lower(), report
        assert re.search(r"(\d+) of \1 messages \(100%\) translated", report), report


def test_indonesian_reads_as_indonesian_signs_do() -> None:
    """A few words a visitor meets at a door, as Indonesian buildings write them."""
    id_ = Language.of("id")
    assert id_.gettext("ENTRANCE") == "MASUK"
    assert id_.gettext("EXIT") == "KELUAR"
    assert id_.gettext("Capacity full") == "Kapasitas penuh"
    assert id_.gettext("Admitted") == "Silakan masuk"
    colours = [id_.gettext(c) for c in ("Green", "Yellow", "Red", "Black")]
    assert colours == ["Hijau", "Kuning", "Merah", "Hitam"]
    # The same colour words in the dashboard's verdicts and reasons.
    scripts = js_catalog("id")
    for english, word in zip(("Green", "Yellow", "Red", "Black"), colours, strict=True):
        assert scripts[english.upper()] == word.upper()
    assert scripts["Yellow: one dose"].startswith("Kuning:")
    assert scripts["Red: not vaccinated"].startswith("Merah:")
    assert scripts["Black: positive or close contact"].startswith("Hitam:")


def test_numbers_and_dates_follow_the_language() -> None:
    from datetime import date

    assert Language.of("id").number(1234567) == "1.234.567"
    assert Language.of("en").number(1234567) == "1,234,567"
    assert Language.of("id").format_date(date(2026, 8, 17)) == "17 Agustus 2026"
    assert Language.of("en").format_date(date(2026, 8, 17)) == "17 August 2026"


@pytest.mark.parametrize(
    ("chosen", "header", "default", "expected"),
    [
        (None, "id-ID,id;q=0.9,en-US;q=0.8,en;q=0.7", "en", "id"),
        (None, "en-GB,en;q=0.9", "id", "en"),
        (None, "fr-FR, de;q=0.9", "en", "en"),  # nothing Pintu speaks: the facility's
        (None, "fr;q=1, id;q=0.2, en;q=0.5", "id", "en"),  # quality decides, not order
        (None, "en;q=0, id", "en", "id"),  # q=0 means "not this one"
        (None, "en;q=banana, id", "en", "id"),  # a malformed range is skipped
        (None, "x" * 5000, "id", "id"),  # junk of any length
        (None, None, "en", "en"),
        (None, "in-ID,in;q=0.9", "en", "id"),  # an older Android's code for Indonesian
        ("en", "id", "id", "en"),  # the person's own choice wins
        ("klingon", "id", "en", "id"),  # a bad cookie is ignored
    ],
)
def test_the_language_a_page_speaks(
    chosen: str | None, header: str | None, default: str, expected: str
) -> None:
    assert negotiate(chosen, header, default) == expected


def test_a_long_header_is_read_only_so_far() -> None:
    header = ", ".join(["fr"] * 100 + ["id"])
    assert accepted(header) == []
