"""Source configuration and the real sources: image folders, videos and the Pi camera."""

from __future__ import annotations

import concurrent.futures
import copy
import logging
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, ClassVar

import av
import numpy as np
import pytest
import segno
from PIL import Image
from pydantic import BaseModel, TypeAdapter, ValidationError

from firmware.camera import (
    FolderSource,
    FolderSourceConfig,
    PiCameraSource,
    PiCameraSourceConfig,
    SourceConfig,
    SyntheticSourceConfig,
    VideoSource,
    VideoSourceConfig,
    camera_controls,
    open_source,
)
from firmware.decoder import make_decoder
from firmware.errors import SourceError
from firmware.frames import FrameSource
from firmware.synthetic import SyntheticSource

SOURCE_CONFIG: TypeAdapter[SourceConfig] = TypeAdapter(SourceConfig)


def code_frame(text: str, size: tuple[int, int] = (240, 320)) -> np.ndarray:
    modules = np.pad(np.array(segno.make_qr(text, error="m").matrix, dtype=bool), 4)
    code = np.repeat(np.repeat(np.where(modules, 20, 235).astype(np.uint8), 4, 0), 4, 1)
    frame = np.full(size, 128, dtype=np.uint8)
    top, left = (size[0] - code.shape[0]) // 2, (size[1] - code.shape[1]) // 2
    frame[top : top + code.shape[0], left : left + code.shape[1]] = code
    return frame


# Configuration


def test_the_kind_picks_the_source_config() -> None:
    assert isinstance(
        SOURCE_CONFIG.validate_python({"kind": "folder", "path": "frames"}), FolderSourceConfig
    )
    assert isinstance(
        SOURCE_CONFIG.validate_python({"kind": "video", "path": "a.mp4", "loop": True}),
        VideoSourceConfig,
    )
    synthetic = SOURCE_CONFIG.validate_python({"kind": "synthetic", "preset": "hard", "seed": 3})
    assert isinstance(synthetic, SyntheticSourceConfig)
    assert (synthetic.width, synthetic.height, synthetic.fps) == (640, 480, None)
    camera = SOURCE_CONFIG.validate_python({"kind": "picamera2"})
    assert isinstance(camera, PiCameraSourceConfig)
    assert (camera.width, camera.height, camera.fps) == (640, 480, 15.0)


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "webcam"},
        {"kind": "folder"},
        {"kind": "folder", "path": "x", "fsp": 5},
        {"kind": "synthetic", "preset": "medium"},
        {"kind": "video", "path": "a.mp4", "fps": 0},
        {"kind": "picamera2", "width": 0},
    ],
)
def test_bad_source_configs_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SOURCE_CONFIG.validate_python(bad)


@pytest.mark.parametrize(
    "model",
    [FolderSourceConfig, VideoSourceConfig, SyntheticSourceConfig, PiCameraSourceConfig],
)
def test_every_field_is_described(model: type[BaseModel]) -> None:
    for name, info in model.model_fields.items():
        assert info.description, f"{model.__name__}.{name} has no description"


def test_open_source_builds_each_kind(tmp_path: Path) -> None:
    Image.fromarray(code_frame("PINTU A")).save(tmp_path / "a.png")
    folder = open_source(FolderSourceConfig(path=tmp_path))
    assert isinstance(folder, FolderSource)
    synthetic = open_source(SyntheticSourceConfig(preset="easy", width=320, height=240, seed=1))
    assert isinstance(synthetic, SyntheticSource)
    assert isinstance(synthetic, FrameSource)
    assert synthetic.params.width == 320
    assert next(iter(synthetic)).pixels.shape == (240, 320)
    synthetic.close()


# Folder source


def test_folder_source_reads_images_in_name_order_and_skips_bad_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Image.fromarray(code_frame("PINTU B")).save(tmp_path / "02.png")
    rgb = np.stack([code_frame("PINTU A")] * 3, axis=-1)
    Image.fromarray(rgb).save(tmp_path / "01.jpg", quality=95)
    Image.fromarray(code_frame("PINTU C")).save(tmp_path / "04.bmp")
    (tmp_path / "03.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    (tmp_path / "notes.txt").write_text("not a frame")

    source = FolderSource(tmp_path)
    decoder = make_decoder()
    with caplog.at_level(logging.WARNING, logger="firmware.camera"):
        frames = list(source)

    assert [decoder.decode(f.pixels) for f in frames] == [["PINTU A"], ["PINTU B"], ["PINTU C"]]
    assert [f.index for f in frames] == [0, 1, 2]
    assert all(f.pixels.ndim == 2 and f.pixels.dtype == np.uint8 for f in frames)
    assert source.unreadable == 1
    assert "03.png" in caplog.text


def test_folder_source_loops_until_closed(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    source = FolderSource(tmp_path, loop=True)
    seen = 0
    for _ in source:
        seen += 1
        if seen == 5:
            source.close()
    assert seen == 5


def test_folder_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such folder"):
        FolderSource(tmp_path / "missing")
    with pytest.raises(SourceError, match="no images"):
        FolderSource(tmp_path)
    (tmp_path / "broken.png").write_text("not an image")
    assert list(FolderSource(tmp_path)) == []
    with pytest.raises(SourceError, match="none of the images"):
        list(FolderSource(tmp_path, loop=True))


# Video source


def write_video(path: Path, images: list[np.ndarray], fps: int = 10) -> None:
    """A lossless (FFV1) grayscale video, so frames come back exactly as written."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.height, stream.width = images[0].shape
        stream.pix_fmt = "gray"
        for image in images:
            frame = av.VideoFrame.from_ndarray(image, format="gray")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_source_reads_frames_back(tmp_path: Path) -> None:
    images = [code_frame(f"PINTU {i}") for i in range(4)]
    path = tmp_path / "door.mkv"
    write_video(path, images)

    source = open_source(VideoSourceConfig(path=path))
    frames = list(source)

    assert isinstance(source, VideoSource)
    assert len(frames) == 4
    for frame, image in zip(frames, images, strict=True):
        np.testing.assert_array_equal(frame.pixels, image)
    decoder = make_decoder()
    assert [decoder.decode(f.pixels) for f in frames] == [[f"PINTU {i}"] for i in range(4)]
    source.close()


def test_video_source_loops(tmp_path: Path) -> None:
    path = tmp_path / "loop.mkv"
    write_video(path, [np.full((16, 16), v, np.uint8) for v in (10, 20, 30)])
    source = VideoSource(path, loop=True)
    values = []
    for frame in source:
        values.append(int(frame.pixels[0, 0]))
        if len(values) == 7:
            source.close()
    assert values == [10, 20, 30, 10, 20, 30, 10]


def test_video_source_errors_name_the_file_and_the_reason(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video at all " * 50)
    with pytest.raises(SourceError, match=r"garbage\.mp4: cannot open video: .+") as caught:
        VideoSource(garbage)
    assert isinstance(caught.value, OSError)
    with pytest.raises(SourceError, match=r"missing\.mp4: cannot open video: No such file"):
        VideoSource(tmp_path / "missing.mp4")


# Pi camera


def test_picamera2_off_the_pi_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # what a laptop has: no picamera2
    with pytest.raises(SourceError) as caught:
        open_source(PiCameraSourceConfig())
    message = str(caught.value)
    assert "Raspberry Pi OS" in message
    assert "apt install python3-picamera2" in message
    assert "--system-site-packages" in message


class FakePicamera2:
    """Just enough of picamera2.Picamera2 to check what the source asks of it.

    ``capture_array`` with no frame queued waits, as picamera2 does on a stalled camera,
    until its ``wait`` timeout or until ``cancel_all_and_flush`` cancels it.
    """

    instances: ClassVar[list[FakePicamera2]] = []
    stride = 352  # the ISP pads 320-pixel rows to this
    model = "imx708"
    tuning: ClassVar[dict[str, Any]] = {}
    controls_available: ClassVar[dict[str, Any]] = {"AfMode": (0, 2, 0), "AfRange": (0, 2, 0)}
    sensor_resolution = (4608, 2592)

    def __init__(self, tuning: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.frames: list[np.ndarray] = []
        self.fail = False
        self.used_tuning = tuning
        self.camera_controls = dict(self.controls_available)
        self.cancelled = threading.Event()
        self.waiting = threading.Event()
        FakePicamera2.instances.append(self)

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [{"Model": FakePicamera2.model, "Num": 0}]

    @staticmethod
    def load_tuning_file(name: str) -> dict[str, Any]:
        if name != f"{FakePicamera2.model}.json":
            raise RuntimeError("Tuning file not found")
        return copy.deepcopy(FakePicamera2.tuning)

    @staticmethod
    def find_tuning_algo(tuning: dict[str, Any], name: str) -> dict[str, Any]:
        found: dict[str, Any] = next(a for a in tuning["algorithms"] if name in a)[name]
        return found

    def create_video_configuration(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("create_video_configuration", kwargs))
        return dict(kwargs)

    def configure(self, config: dict[str, Any]) -> None:
        self.calls.append(("configure", config))
        main, lores = config["main"]["size"], config["lores"]["size"]
        if lores[0] > main[0] or lores[1] > main[1]:  # as picamera2 checks
            raise RuntimeError("lores stream dimensions may not exceed main stream")
        self.size = lores

    def stream_configuration(self, name: str) -> dict[str, Any]:
        assert name == "lores"
        return {"size": self.size, "stride": self.stride, "format": "YUV420"}

    def start(self) -> None:
        self.calls.append(("start", None))

    def capture_array(self, name: str, wait: float | None = None) -> np.ndarray:
        assert name == "lores"
        assert wait is not None, "a capture without a timeout can wait for ever"
        if self.fail:
            raise RuntimeError("Camera frontend has timed out!")
        if self.frames:
            return self.frames.pop(0)
        self.waiting.set()
        if self.cancelled.wait(wait):
            raise concurrent.futures.CancelledError()
        raise TimeoutError()

    def cancel_all_and_flush(self) -> None:
        self.calls.append(("cancel_all_and_flush", None))
        self.cancelled.set()

    def stop(self) -> None:
        self.calls.append(("stop", None))

    def close(self) -> None:
        self.calls.append(("close", None))


AGC_TUNING: dict[str, Any] = {
    "version": 2.0,
    "algorithms": [
        {"rpi.black_level": {"black_level": 4096}},
        {
            "rpi.agc": {
                "channels": [
                    {
                        "exposure_modes": {
                            "normal": {
                                "shutter": [100, 10000, 30000, 60000, 66666],
                                "gain": [1.0, 1.5, 2.0, 4.0, 8.0],
                            },
                            "short": {"shutter": [100, 5000, 10000, 20000, 60000]},
                        }
                    },
                    {"exposure_modes": {"normal": {"exposure": [100, 20000, 120000]}}},
                ]
            }
        },
    ],
}


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.instances = []
    monkeypatch.setattr(FakePicamera2, "tuning", AGC_TUNING)
    return FakePicamera2


def test_picamera2_source_reads_the_lores_y_plane(fake_picamera2: type[FakePicamera2]) -> None:
    source = PiCameraSource(320, 240, fps=10.0)
    camera = fake_picamera2.instances[0]
    image = code_frame("PINTU PI")
    lores = np.full((240 * 3 // 2, FakePicamera2.stride), 99, dtype=np.uint8)
    lores[:240, :320] = image
    camera.frames = [lores]

    frames = iter(source)
    frame = next(frames)

    name, asked = camera.calls[0]
    assert name == "create_video_configuration"
    # The main stream as small as the lores one, same aspect, few buffers.
    assert asked["main"] == {"size": (320, 240), "format": "YUV420"}
    assert asked["lores"] == {"size": (320, 240), "format": "YUV420"}
    assert asked["buffer_count"] == 3
    assert ("start", None) in camera.calls
    assert frame.pixels.shape == (240, 320)
    assert np.shares_memory(frame.pixels, lores)
    assert make_decoder().decode(frame.pixels) == ["PINTU PI"]
    # The camera then dies: an error the scan loop can raise an alarm for.
    camera.fail = True
    with pytest.raises(SourceError, match="stopped delivering frames: Camera frontend"):
        next(frames)
    source.close()
    assert camera.calls[-3:] == [("cancel_all_and_flush", None), ("stop", None), ("close", None)]


def test_camera_module_3_focuses_close_and_exposure_is_capped(
    fake_picamera2: type[FakePicamera2],
) -> None:
    source = PiCameraSource(config=PiCameraSourceConfig(fps=15, max_exposure_ms=8))
    camera = fake_picamera2.instances[0]
    controls = camera.calls[0][1]["controls"]
    assert controls["AfMode"] == 2 and controls["AfRange"] == 1  # continuous, macro
    assert controls["FrameDurationLimits"] == (66667, 66667)  # 15 fps, never longer
    assert camera.used_tuning is not None
    channels = camera.used_tuning["algorithms"][1]["rpi.agc"]["channels"]
    assert channels[0]["exposure_modes"]["normal"]["shutter"] == [100, 8000, 8000, 8000, 8000]
    assert channels[0]["exposure_modes"]["short"]["shutter"] == [100, 5000, 8000, 8000, 8000]
    assert channels[1]["exposure_modes"]["normal"]["exposure"] == [100, 8000, 8000]
    assert channels[0]["exposure_modes"]["normal"]["gain"][-1] == 8.0  # gain makes up
    source.close()


def test_a_lens_position_fixes_the_focus_and_fixed_focus_cameras_get_none() -> None:
    fixed = camera_controls(PiCameraSourceConfig(lens_position=3.0), {"AfMode", "LensPosition"})
    assert fixed["AfMode"] == 0 and fixed["LensPosition"] == 3.0
    plain = camera_controls(PiCameraSourceConfig(lens_position=3.0), {"ExposureTime"})
    assert "AfMode" not in plain and "LensPosition" not in plain


def test_a_camera_without_its_tuning_file_keeps_its_own(
    fake_picamera2: type[FakePicamera2],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def missing(name: str) -> dict[str, Any]:
        raise RuntimeError("Tuning file not found")

    monkeypatch.setattr(FakePicamera2, "load_tuning_file", staticmethod(missing))
    with caplog.at_level(logging.WARNING, logger="firmware.camera"):
        source = PiCameraSource()
    assert fake_picamera2.instances[0].used_tuning is None
    assert "exposure left uncapped" in caplog.text
    source.close()


def test_a_stalled_camera_is_a_failure_after_the_timeout(
    fake_picamera2: type[FakePicamera2],
) -> None:
    source = PiCameraSource(config=PiCameraSourceConfig(capture_timeout_s=0.05))
    with pytest.raises(SourceError, match=r"no frame within 0\.05 s"):
        next(iter(source))
    assert ("cancel_all_and_flush", None) in fake_picamera2.instances[0].calls
    source.close()


def test_closing_cancels_a_capture_waiting_on_a_stalled_camera(
    fake_picamera2: type[FakePicamera2],
) -> None:
    source = PiCameraSource(config=PiCameraSourceConfig(capture_timeout_s=30))
    camera = fake_picamera2.instances[0]
    ended = threading.Event()

    def read() -> None:
        assert list(source) == []  # ends quietly once closed
        ended.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert camera.waiting.wait(5)
    started = time.monotonic()
    source.close()
    reader.join(5)
    assert ended.is_set() and time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"main_width": 320, "main_height": 240}, "larger than the main stream"),
        ({"width": 641}, "must be even"),
        ({"main_width": 1280, "main_height": 720}, "aspect ratio"),
        ({"main_width": 1280}, "both main_width and main_height"),
        ({"sensor": "imx296", "width": 1600, "height": 1200}, "imx296 gives at most 1456x1088"),
        ({"fps": 30, "max_exposure_ms": 40}, "longer than a frame at 30 fps"),
    ],
)
def test_stream_configurations_picamera2_would_refuse_are_refused(
    options: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        PiCameraSourceConfig.model_validate({"kind": "picamera2", **options})


def test_the_camera_refuses_a_stream_larger_than_its_sensor(
    fake_picamera2: type[FakePicamera2], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakePicamera2, "sensor_resolution", (1456, 1088))
    with pytest.raises(SourceError, match="gives at most 1456x1088, not a 1600x1200"):
        PiCameraSource(1600, 1200)
    assert fake_picamera2.instances[0].calls[-1] == ("close", None)


def test_picamera2_without_a_camera(
    fake_picamera2: type[FakePicamera2], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_camera(self: FakePicamera2, tuning: object = None) -> None:
        raise IndexError("list index out of range")

    monkeypatch.setattr(fake_picamera2, "__init__", no_camera)
    with pytest.raises(SourceError, match="no camera found"):
        PiCameraSource()


def test_synthetic_source_with_visitors_shows_codes_from_a_file(tmp_path: Path) -> None:
    from firmware.camera import SyntheticSourceConfig, open_source
    from firmware.decoder import make_decoder

    codes = tmp_path / "codes.txt"
    codes.write_text("# visitors\nHELLO-1\n\nHELLO-2\n")
    source = open_source(
        SyntheticSourceConfig(
            preset="easy", seed=1, visitors_file=codes, visitors_per_minute=600, visit_frames=3
        )
    )
    decoder = make_decoder()
    seen: set[str] = set()
    for count, frame in enumerate(source):
        seen.update(decoder.decode(frame.pixels))
        if seen == {"HELLO-1", "HELLO-2"} or count > 2000:
            break
    source.close()
    assert seen == {"HELLO-1", "HELLO-2"}


def test_synthetic_source_with_unreadable_visitor_file(tmp_path: Path) -> None:
    from firmware.camera import SyntheticSourceConfig, open_source
    from firmware.errors import SourceError

    with pytest.raises(SourceError, match="cannot read visitor codes"):
        open_source(SyntheticSourceConfig(visitors_file=tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody\n")
    with pytest.raises(SourceError, match="no visitor codes"):
        open_source(SyntheticSourceConfig(visitors_file=empty))
