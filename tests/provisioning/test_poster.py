"""Door posters from the technician's tools: written to a file whose QR code reads back as
the door's address at the registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from protocol.poster import PosterError
from provisioning.poster import DoorSign, save

REGISTRY = "https://registry.example.id"


def read_codes(path: Path) -> list[str]:
    with Image.open(path) as image:
        return [r.text for r in zxingcpp.read_barcodes(image.convert("L"))]


def door(
    facility: str = "mall-a",
    door_id: str = "main",
    direction: str = "entry",
    languages: tuple[str, ...] = ("id",),
    **names: str,
) -> DoorSign:
    return DoorSign(
        facility_id=facility,
        facility_name=names.get("facility_name", "Mall A"),
        door_id=door_id,
        door_name=names.get("door_name", "Main"),
        base_url=REGISTRY,
        direction=direction,
        languages=languages,
    )


def test_the_poster_qr_reads_back(tmp_path: Path) -> None:
    sign = door("mall-a", "main-in", facility_name="Mall A Kelapa Gading", door_name="Main")
    out = save(sign, tmp_path / "main-in.png")
    with Image.open(out) as image:
        assert image.size == (1240, 1754)  # A4 at 150 dpi
    assert read_codes(out) == [f"{REGISTRY}/d/mall-a/main-in"]


def test_a_poster_printed_small_and_photographed_badly_still_reads(tmp_path: Path) -> None:
    out = save(door("clinic", "front", "both", door_name="Front door"), tmp_path / "p.png")
    with Image.open(out) as image:
        small = image.convert("L").resize((310, 438)).rotate(7, fillcolor=255, expand=True)
        small.save(tmp_path / "photo.png")
    assert read_codes(tmp_path / "photo.png") == [f"{REGISTRY}/d/clinic/front"]


def test_a_pdf_poster(tmp_path: Path) -> None:
    out = save(door("mall-a", "exit-1", "exit"), tmp_path / "p.pdf")
    assert out.read_bytes().startswith(b"%PDF")


def test_an_unknown_direction_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PosterError, match="direction"):
        save(door(direction="sideways"), tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("languages", [("id",), ("en",), ("id", "en"), ("en", "id")])
def test_posters_in_the_facilitys_language_or_both_still_read(
    languages: tuple[str, ...], tmp_path: Path
) -> None:
    sign = door(
        "pasar-baru", "masuk-1", "both", languages,
        facility_name="Pasar Baru Bandung", door_name="Pintu Masuk Utama",
    )  # fmt: skip
    out = save(sign, tmp_path / "p.png")
    assert read_codes(out) == [f"{REGISTRY}/d/pasar-baru/masuk-1"]


def test_the_two_languages_print_differently(tmp_path: Path) -> None:
    def pixels(languages: tuple[str, ...]) -> bytes:
        sign = door(languages=languages)
        with Image.open(save(sign, tmp_path / f"{'-'.join(languages)}.png")) as image:
            return image.tobytes()

    assert len({pixels(("id",)), pixels(("en",)), pixels(("id", "en"))}) == 3


@pytest.mark.parametrize("languages", [(), ("fr",), ("id", "id"), ("id", "en", "id")])
def test_a_poster_in_an_unknown_language_is_refused(
    languages: tuple[str, ...], tmp_path: Path
) -> None:
    with pytest.raises(PosterError, match="language"):
        save(door(languages=languages), tmp_path / "p.png")
