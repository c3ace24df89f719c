"""Door posters: the QR code reads back as the door's URI."""

from __future__ import annotations

from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from protocol.poster import PosterError
from provisioning.poster import DoorSign, door_uri, save


def read_codes(path: Path) -> list[str]:
    with Image.open(path) as image:
        return [r.text for r in zxingcpp.read_barcodes(image.convert("L"))]


def test_the_poster_qr_reads_back(tmp_path: Path) -> None:
    out = save(
        DoorSign("mall-a", "Mall A Kelapa Gading", "main-in", "Main entrance", "entry"),
        tmp_path / "main-in.png",
    )
    with Image.open(out) as image:
        assert image.size == (1240, 1754)  # A4 at 150 dpi
    assert read_codes(out) == ["pintu-door:mall-a/main-in"]


def test_a_poster_printed_small_and_photographed_badly_still_reads(tmp_path: Path) -> None:
    out = save(DoorSign("clinic", "Clinic", "front", "Front door", "both"), tmp_path / "p.png")
    with Image.open(out) as image:
        small = image.convert("L").resize((310, 438)).rotate(7, fillcolor=255, expand=True)
        small.save(tmp_path / "photo.png")
    assert read_codes(tmp_path / "photo.png") == ["pintu-door:clinic/front"]


def test_a_pdf_poster(tmp_path: Path) -> None:
    out = save(DoorSign("mall-a", "Mall A", "exit-1", "Exit 1", "exit"), tmp_path / "p.pdf")
    assert out.read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize(("facility", "door"), [("mall/a", "main"), ("mall-a", ""), ("-x", "d")])
def test_bad_ids_are_refused(facility: str, door: str, tmp_path: Path) -> None:
    with pytest.raises(PosterError, match="not a valid"):
        door_uri(facility, door)


def test_an_unknown_direction_is_refused(tmp_path: Path) -> None:
    sign = DoorSign("mall-a", "Mall A", "main", "Main", "sideways")
    with pytest.raises(PosterError, match="direction"):
        save(sign, tmp_path / "p.png")


@pytest.mark.parametrize("languages", [("id",), ("en",), ("id", "en"), ("en", "id")])
def test_posters_in_the_facilitys_language_or_both_still_read(
    languages: tuple[str, ...], tmp_path: Path
) -> None:
    sign = DoorSign(
        "pasar-baru", "Pasar Baru Bandung", "masuk-1", "Pintu Masuk Utama", "both", languages
    )
    out = save(sign, tmp_path / "p.png")
    assert read_codes(out) == ["pintu-door:pasar-baru/masuk-1"]


def test_the_two_languages_print_differently(tmp_path: Path) -> None:
    def pixels(languages: tuple[str, ...]) -> bytes:
        sign = DoorSign("mall-a", "Mall A", "main", "Main", "entry", languages)
        with Image.open(save(sign, tmp_path / f"{'-'.join(languages)}.png")) as image:
            return image.tobytes()

    assert len({pixels(("id",)), pixels(("en",)), pixels(("id", "en"))}) == 3


@pytest.mark.parametrize("languages", [(), ("fr",), ("id", "id"), ("id", "en", "id")])
def test_a_poster_in_an_unknown_language_is_refused(
    languages: tuple[str, ...], tmp_path: Path
) -> None:
    with pytest.raises(PosterError, match="language"):
        save(DoorSign("mall-a", "Mall A", "main", "Main", "entry", languages), tmp_path / "p.png")
