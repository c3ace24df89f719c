"""The QR decoders: real codes read by both backends, bad frames never raise."""

from __future__ import annotations

import ctypes.util
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import segno
from PIL import Image
from pydantic import ValidationError

from firmware.decoder import (
    BACKENDS,
    Decoder,
    DecoderConfig,
    PyzbarDecoder,
    ZxingDecoder,
    _text,
    _zxing_text,
    load_image,
    make_decoder,
)
from firmware.errors import DecoderUnavailable, SourceError
from firmware.frames import y_plane
from protocol.passes import issue
from protocol.status import Status
from protocol.trust import SigningKey


@cache
def pass_text() -> str:
    return issue(
        SigningKey.generate(), bytes(range(12)), Status.GREEN, 2, 1_700_000_000, 1_800_000_000
    )


def code_image(
    content: str | bytes, scale: int = 4, size: tuple[int, int] = (480, 640)
) -> np.ndarray:
    """A clean QR code, dark on light, in the middle of a gray frame."""
    qr = segno.make_qr(content, error="m")
    modules = np.pad(np.array(qr.matrix, dtype=bool), 4)
    code = np.where(modules, 20, 235).astype(np.uint8)
    code = np.repeat(np.repeat(code, scale, axis=0), scale, axis=1)
    frame = np.full(size, 128, dtype=np.uint8)
    top = (size[0] - code.shape[0]) // 2
    left = (size[1] - code.shape[1]) // 2
    frame[top : top + code.shape[0], left : left + code.shape[1]] = code
    return frame


@pytest.fixture(params=BACKENDS)
def decoder(request: pytest.FixtureRequest) -> Decoder:
    return make_decoder(request.param)


def test_both_backends_read_a_pass(decoder: Decoder) -> None:
    assert isinstance(decoder, Decoder)
    assert decoder.decode(code_image(pass_text())) == [pass_text()]
    assert decoder.bad_frames == 0


def test_an_empty_frame_has_no_code(decoder: Decoder) -> None:
    assert decoder.decode(np.full((480, 640), 128, dtype=np.uint8)) == []
    assert decoder.bad_frames == 0


def test_a_padded_y_plane_view_is_read_in_place(decoder: Decoder) -> None:
    image = code_image(pass_text())
    height, width = image.shape
    stride = width + 64
    buffer = np.full((height * 3 // 2, stride), 200, dtype=np.uint8)
    buffer[:height, :width] = image
    plane = y_plane(buffer, width, height, stride)
    assert not plane.flags.c_contiguous

    assert decoder.decode(plane) == [pass_text()]
    assert decoder.bad_frames == 0


def test_a_read_only_frame_is_read(decoder: Decoder) -> None:
    image = code_image("PINTU TEST")
    image.flags.writeable = False
    assert decoder.decode(image) == ["PINTU TEST"]


BAD_FRAMES = {
    "none": None,
    "float": np.zeros((48, 64), dtype=np.float32),
    "color": np.zeros((48, 64, 3), dtype=np.uint8),
    "one row of bytes": np.zeros(64, dtype=np.uint8),
    "empty 0x0": np.zeros((0, 0), dtype=np.uint8),
    "empty 0x64": np.zeros((0, 64), dtype=np.uint8),
    "raw bytes": np.random.default_rng(0).bytes(640 * 480),
    "a list": [[0, 1], [1, 0]],
    "int64": np.zeros((48, 64), dtype=np.int64),
    "transposed": np.zeros((64, 48), dtype=np.uint8).T,
    "flipped": np.zeros((48, 64), dtype=np.uint8)[::-1],
    "every other column": np.zeros((48, 128), dtype=np.uint8)[:, ::2],
}


@pytest.mark.parametrize("bad", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_a_bad_frame_gives_nothing_and_is_counted(decoder: Decoder, bad: object) -> None:
    assert decoder.decode(bad) == []  # type: ignore[arg-type]
    assert decoder.decode(bad) == []  # type: ignore[arg-type]
    assert decoder.bad_frames == 2
    # ... and the decoder still works afterwards.
    assert decoder.decode(code_image(pass_text())) == [pass_text()]
    assert decoder.bad_frames == 2


def test_random_noise_frames_never_raise(decoder: Decoder) -> None:
    rng = np.random.default_rng(7)
    for _ in range(5):
        noise = rng.integers(0, 256, (120, 160), dtype=np.uint8)
        assert isinstance(decoder.decode(noise), list)
    assert decoder.bad_frames == 0


def test_a_code_with_bytes_that_are_not_utf8_gives_text(decoder: Decoder) -> None:
    image = code_image(b"\xff\xfe\xc3( not utf-8 \x80")
    texts = decoder.decode(image)
    assert len(texts) == 1
    assert isinstance(texts[0], str)
    assert texts[0].endswith(" not utf-8 \x80") or "not utf-8" in texts[0]


def test_undecodable_bytes_become_replacement_characters() -> None:
    assert _text(b"ok \xff\xfe") == "ok \ufffd\ufffd"


def test_zxing_text_falls_back_to_the_raw_bytes() -> None:
    class Barcode:
        bytes = b"PINTU\xff"

        @property
        def text(self) -> str:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    assert _zxing_text(Barcode()) == "PINTU\ufffd"


def test_make_decoder_names_its_backends() -> None:
    assert make_decoder().name == "escalating"
    assert isinstance(make_decoder("zxingcpp"), ZxingDecoder)
    assert isinstance(make_decoder("pyzbar"), PyzbarDecoder)
    with pytest.raises(
        ValueError, match="unknown QR decoder 'zbar': expected one of escalating, zxingcpp, pyzbar"
    ):
        make_decoder("zbar")


def test_decoder_config() -> None:
    assert DecoderConfig().backend == "escalating"
    assert DecoderConfig(backend="pyzbar").backend == "pyzbar"
    assert DecoderConfig.model_fields["backend"].description
    with pytest.raises(ValidationError):
        DecoderConfig(backend="opencv")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        DecoderConfig.model_validate({"backend": "zxingcpp", "try_harder": True})


def test_missing_zxingcpp_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zxingcpp", None)
    with pytest.raises(DecoderUnavailable, match="pip install zxing-cpp") as caught:
        make_decoder("zxingcpp")
    assert isinstance(caught.value, ImportError)


def test_missing_pyzbar_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyzbar", None)
    with pytest.raises(DecoderUnavailable, match="pip install pyzbar"):
        make_decoder("pyzbar")


def test_missing_libzbar_names_the_system_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # Make pyzbar import afresh on a machine where the zbar library cannot be found.
    for name in [m for m in sys.modules if m == "pyzbar" or m.startswith("pyzbar.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(DecoderUnavailable, match="apt install libzbar0"):
        PyzbarDecoder()


def test_load_image_reads_any_image_as_gray(tmp_path: Path) -> None:
    path = tmp_path / "code.png"
    rgb = np.stack([code_image("PINTU TEST")] * 3, axis=-1)
    Image.fromarray(rgb).save(path)

    image = load_image(path)

    assert image.dtype == np.uint8
    assert image.ndim == 2
    assert image.flags.c_contiguous
    assert make_decoder().decode(image) == ["PINTU TEST"]


def test_load_image_explains_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        load_image(tmp_path / "missing.png")
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    with pytest.raises(SourceError, match="not an image file"):
        load_image(text)
    with pytest.raises(SourceError, match="is a folder"):
        load_image(tmp_path)
    truncated = tmp_path / "truncated.png"
    Image.fromarray(code_image("PINTU TEST")).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(SourceError, match="cannot read image") as caught:
        load_image(truncated)
    assert "\n" not in str(caught.value)
