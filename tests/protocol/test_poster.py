"""A door's poster: its code holds the door's https address at the registry, and its words
say which way the door takes a pass and whether it is for coming in, going out or both."""

from __future__ import annotations

import itertools

import pytest
import zxingcpp
from PIL import Image

from protocol import poster
from protocol.poster import DoorSign, PosterError, door_address, instructions, render
from runtime.i18n import Language

BASE = "https://registry.example.id"


def sign(**changes: object) -> DoorSign:
    fields: dict[str, object] = {
        "facility_id": "mall-kelapa-14f2af",
        "facility_name": "Mall Kelapa Gading",
        "door_id": "main-in",
        "door_name": "Main entrance",
        "base_url": BASE,
        "direction": "entry",
        "ways": "camera",
        "languages": ("id", "en"),
    }
    return DoorSign(**{**fields, **changes})  # type: ignore[arg-type]


def codes(image: Image.Image) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(image.convert("L"))]


def english(direction: str, ways: str) -> str:
    """Everything the poster says beneath its code, in English, one line a message."""
    en = Language.of("en")
    return "\n".join(en.gettext(m) for m in instructions(direction, ways).messages())


@pytest.mark.parametrize(
    ("base", "address"),
    [
        (BASE, f"{BASE}/d/mall-a/main-in"),
        (f"{BASE}/", f"{BASE}/d/mall-a/main-in"),
        ("https://example.id/pintu/", "https://example.id/pintu/d/mall-a/main-in"),
        ("http://127.0.0.1:8090", "http://127.0.0.1:8090/d/mall-a/main-in"),
    ],
)
def test_a_doors_address_is_under_the_registrys(base: str, address: str) -> None:
    assert door_address(base, "mall-a", "main-in") == address


@pytest.mark.parametrize(
    "base",
    [
        "registry.example.id",
        "/d",
        "ftp://registry.example.id",
        "pintu-door:",
        "https://",
        "https:///path",
        f"{BASE}/?lang=id",
        f"{BASE}?",
        f"{BASE}#top",
        "https://registry example.id",
        f"{BASE}\n",
        "https://user:secret@registry.example.id",
        "https://registry.example.id:port",
        "https://régistry.example.id",
        "",
    ],
)
def test_a_base_that_is_no_http_address_is_refused(base: str) -> None:
    with pytest.raises(PosterError, match=r"registry address|no query"):
        door_address(base, "mall-a", "main-in")


@pytest.mark.parametrize(
    ("facility", "door"), [("mall/a", "main"), ("mall-a", ""), ("-x", "d"), ("a", "b/../c")]
)
def test_bad_ids_are_refused(facility: str, door: str) -> None:
    with pytest.raises(PosterError, match="not a valid"):
        door_address(BASE, facility, door)


@pytest.mark.parametrize("ways", poster.WAYS)
def test_the_drawn_code_opens_the_doors_https_address(ways: str) -> None:
    drawn = sign(ways=ways, direction="both")
    assert drawn.address == f"{BASE}/d/mall-kelapa-14f2af/main-in"
    page = render(drawn)
    assert page.size == (1240, 1754)  # A4 at 150 dpi
    assert codes(page) == [drawn.address]


@pytest.mark.parametrize(
    ("direction", "ways"), list(itertools.product(poster.DIRECTIONS, poster.WAYS))
)
def test_every_kind_of_door_fits_the_page_with_long_names_in_two_languages(
    direction: str, ways: str
) -> None:
    # Two languages, two lines of names each and both ways is the fullest page there is:
    # the words get smaller and the code stays readable.
    drawn = sign(
        facility_name="Mall Kelapa Gading Jakarta Utara Blok A dan B, Lantai Dasar",
        door_name="Pintu Masuk Utara dekat tempat parkir sepeda motor",
        door_id="pintu-masuk-utara-dekat-parkir-motor-1",
        direction=direction,
        ways=ways,
    )
    assert codes(render(drawn)) == [drawn.address]


def test_each_way_prints_its_own_steps() -> None:
    pages = {ways: render(sign(ways=ways)).tobytes() for ways in poster.WAYS}
    assert len(set(pages.values())) == 3


@pytest.mark.parametrize("direction", poster.DIRECTIONS)
def test_a_poster_door_says_to_scan_it_with_a_phone(direction: str) -> None:
    words = english(direction, "poster")
    assert "Point your phone's camera at this code" in words
    assert "Hold it up to the camera at the door" not in words
    # At a door with no camera a printed pass is no help: only a pass on the phone.
    assert "No Pintu pass on your phone? The staff check you" in words
    assert "printed pass" not in words
    assert len(instructions(direction, "poster").sections) == 1


@pytest.mark.parametrize("direction", poster.DIRECTIONS)
def test_a_camera_door_says_to_hold_the_pass_up_to_its_camera(direction: str) -> None:
    words = english(direction, "camera")
    assert "Hold it up to the camera at the door" in words
    assert "take out your printed pass" in words
    assert "at this code" not in words
    assert "No pass with you? The staff check you" in words


@pytest.mark.parametrize("direction", poster.DIRECTIONS)
def test_a_door_of_both_ways_shows_both_under_their_headings(direction: str) -> None:
    found = instructions(direction, "both")
    assert [s.heading for s in found.sections] == [poster.WITH_PHONE, poster.WITH_CAMERA]
    assert found.sections[0].steps == instructions(direction, "poster").sections[0].steps
    assert found.sections[1].steps == instructions(direction, "camera").sections[0].steps
    assert "No pass with you?" in english(direction, "both")


@pytest.mark.parametrize("ways", poster.WAYS)
def test_an_exit_speaks_of_checking_out(ways: str) -> None:
    words = english("exit", ways)
    assert words.startswith("How to check out\n")
    assert "checks you out" in words or "you are checked out" in words
    assert "check you out with your NIK and name" in words
    for entering in ("checks you in", "check you in", "come in", "Green: come in"):
        assert entering not in words


@pytest.mark.parametrize("ways", poster.WAYS)
def test_an_entrance_speaks_of_checking_in(ways: str) -> None:
    words = english("entry", ways)
    assert words.startswith("How to check in\n")
    assert "Green: come in" in words
    assert "check you in with your NIK and name" in words
    for leaving in ("checks you out", "check you out", "checked out", "in or out"):
        assert leaving not in words


@pytest.mark.parametrize("ways", poster.WAYS)
def test_a_door_both_ways_speaks_of_both(ways: str) -> None:
    words = english("both", ways)
    assert words.startswith("How to check in and out\n")
    assert "Green: come in" in words
    assert "check you in or out with your NIK and name" in words
    if ways != "poster":
        assert "you are checked out" in words


def test_every_line_reads_in_indonesian_too() -> None:
    id_ = Language.of("id")
    for direction, ways in itertools.product(poster.DIRECTIONS, poster.WAYS):
        for message in instructions(direction, ways).messages():
            assert id_.gettext(message) != message, message
    assert id_.gettext(poster.HOW["exit"]) == "Cara check-out"
    assert "check-out" in id_.gettext(poster.NO_PASS["exit"])


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"direction": "sideways"}, "direction"),
        ({"ways": "telepathy"}, "kind"),
        ({"base_url": "pintu-door:"}, "registry address"),
        ({"languages": ("fr",)}, "language"),
    ],
)
def test_a_bad_sign_is_refused(changes: dict[str, object], match: str) -> None:
    with pytest.raises(PosterError, match=match):
        render(sign(**changes))
