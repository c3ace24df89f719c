"""Frame sources chosen by configuration: image folders, videos, synthetic scenes, the Pi camera.

``open_source(config)`` is the one seam between door logic and a camera: the controller
reads a :data:`SourceConfig` from its configuration file and gets a
:class:`~firmware.frames.FrameSource`, whatever is behind it. Libraries that only some
sources need (PyAV, picamera2) are imported inside those sources.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Container, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from firmware.errors import SourceError
from firmware.frames import Frame, FrameSource, Pacer, load_image, y_plane
from firmware.synthetic import PRESETS, SyntheticSource, VisitorScene, read_visitor_codes
from protocol.model import StrictModel

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "FolderSource",
    "FolderSourceConfig",
    "PiCameraSource",
    "PiCameraSourceConfig",
    "SourceConfig",
    "SyntheticSourceConfig",
    "VideoSource",
    "VideoSourceConfig",
    "camera_controls",
    "limit_exposure",
    "open_source",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".pgm"})

_FPS_HELP = "Frames per second to deliver at; empty (null) delivers as fast as they can be read."
Fps = Annotated[float, Field(gt=0, le=240)]
Size = Annotated[int, Field(ge=32, le=4096)]


class FolderSourceConfig(StrictModel):
    """Replay the images in a folder, in name order."""

    kind: Literal["folder"] = Field(
        default="folder", description="Source type: a folder of images."
    )
    path: Path = Field(description="Folder holding .png, .jpg, .jpeg, .bmp or .pgm images.")
    loop: bool = Field(
        default=False, description="Start again from the first image after the last."
    )
    fps: Fps | None = Field(default=None, description=_FPS_HELP)


class VideoSourceConfig(StrictModel):
    """Replay a video file."""

    kind: Literal["video"] = Field(default="video", description="Source type: a video file.")
    path: Path = Field(description="Video file in any format FFmpeg reads (mp4, mkv, avi ...).")
    loop: bool = Field(default=False, description="Start again from the beginning at the end.")
    fps: Fps | None = Field(default=None, description=_FPS_HELP)


class SyntheticSourceConfig(StrictModel):
    """A synthetic camera scene in which passes can be shown."""

    kind: Literal["synthetic"] = Field(
        default="synthetic",
        description="Source type: a synthetic scene of a pass held up to a camera.",
    )
    preset: Literal[
        "default",
        "easy",
        "hard",
        "dark_mode",
        "moire",
        "glare_spot",
        "motion_blur",
        "tilt_45",
        "far_small",
        "cracked",
    ] = Field(
        default="default",
        description="How hard the scene makes reading a code: easy, default or hard; or one "
        "trouble phones show at doors: dark_mode, moire, glare_spot, motion_blur, tilt_45, "
        "far_small, cracked.",
    )
    width: Size = Field(default=640, description="Frame width in pixels.")
    height: Size = Field(default=480, description="Frame height in pixels.")
    fps: Fps | None = Field(default=None, description=_FPS_HELP)
    seed: int | None = Field(
        default=None, description="Seed for the scene's randomness; empty (null) differs every run."
    )
    visitors_file: Path | None = Field(
        default=None,
        description="A file of codes, one per line: simulated visitors hold them up at "
        "random times (for demos and soak tests).",
    )
    visitors_follow: bool = Field(
        default=False,
        description="Read visitors_file again whenever it changes, and show nobody while it "
        "is empty (the demo's exit doors show only the people inside).",
    )
    visitors_per_minute: float = Field(
        default=6.0, gt=0, le=600, description="How many simulated visitors arrive per minute."
    )
    visit_frames: int = Field(
        default=8, ge=1, le=1000, description="How many frames each visitor holds the code up."
    )


# The full resolution of each Raspberry Pi camera's sensor: no sensor mode, and so no
# stream, is larger.
SENSORS: dict[str, tuple[int, int]] = {
    "ov5647": (2592, 1944),  # Camera Module 1
    "imx219": (3280, 2464),  # Camera Module 2
    "imx708": (4608, 2592),  # Camera Module 3 (and its wide and NoIR kinds)
    "imx477": (4056, 3040),  # HQ Camera
    "imx296": (1456, 1088),  # Global Shutter Camera
}


class PiCameraSourceConfig(StrictModel):
    """The Raspberry Pi camera, through picamera2's low-resolution YUV420 stream."""

    kind: Literal["picamera2"] = Field(
        default="picamera2", description="Source type: the Raspberry Pi camera (picamera2)."
    )
    width: Size = Field(
        default=640, description="Width of the low-resolution stream the decoder reads."
    )
    height: Size = Field(default=480, description="Height of the low-resolution stream.")
    fps: Fps = Field(default=15.0, le=120, description="Camera frame rate.")
    sensor: Literal["any", "ov5647", "imx219", "imx708", "imx477", "imx296"] = Field(
        default="any",
        description="The camera's sensor, if known (imx708: Camera Module 3; imx219: "
        "Camera Module 2; imx477: HQ; imx296: Global Shutter; ov5647: Camera Module 1): "
        "stream sizes it cannot give are refused by check-config.",
    )
    main_width: Size | None = Field(
        default=None,
        description="Width of the main stream, which the decoder never reads; empty (null) "
        "makes it the size of the low-resolution stream, the least camera memory there is.",
    )
    main_height: Size | None = Field(
        default=None, description="Height of the main stream; empty (null): as main_width."
    )
    buffers: int = Field(
        default=3,
        ge=2,
        le=8,
        description="Camera buffers: 3 keep the camera streaming while one frame is decoded.",
    )
    lens_position: float | None = Field(
        default=None,
        ge=0,
        le=32,
        description="On a camera with autofocus (Camera Module 3): empty (null) focuses "
        "continuously in the macro range (a phone held 10 cm to 1 m away); a number fixes "
        "the lens there, in dioptres (1 / distance in metres: 3.0 focuses at 33 cm). "
        "Ignored on fixed-focus cameras.",
    )
    max_exposure_ms: float = Field(
        default=12.0,
        ge=0.1,
        le=1000,
        description="Longest exposure automatic exposure may choose, in milliseconds: a "
        "shorter one blurs a moving phone less and burns out a bright screen less, at the "
        "cost of more gain (noise) in a dim entrance. At most one frame period.",
    )
    capture_timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="A frame not delivered within this many seconds is a camera failure: the "
        "node raises its alarm and reopens the camera instead of waiting for ever.",
    )

    @model_validator(mode="after")
    def _streams_picamera2_accepts(self) -> PiCameraSourceConfig:
        if self.width % 2 or self.height % 2:
            raise ValueError(
                f"the low-resolution stream is YUV420: width and height must be even, "
                f"not {self.width}x{self.height}"
            )
        if (self.main_width is None) != (self.main_height is None):
            raise ValueError("give both main_width and main_height, or neither")
        main_w, main_h = self.main_size
        if self.width > main_w or self.height > main_h:
            raise ValueError(
                f"the low-resolution stream ({self.width}x{self.height}) is larger than the "
                f"main stream ({main_w}x{main_h}); picamera2 refuses that"
            )
        if main_w % 2 or main_h % 2:
            raise ValueError(
                f"width and height of the main stream must be even, not {main_w}x{main_h}"
            )
        if abs(main_w * self.height - main_h * self.width) > 0.01 * main_w * self.height:
            raise ValueError(
                f"the main stream ({main_w}x{main_h}) and the low-resolution stream "
                f"({self.width}x{self.height}) differ in aspect ratio: the ISP would squash "
                "the picture the decoder reads"
            )
        if self.sensor != "any":
            full_w, full_h = SENSORS[self.sensor]
            if main_w > full_w or main_h > full_h:
                raise ValueError(
                    f"{self.sensor} gives at most {full_w}x{full_h}: no sensor mode gives a "
                    f"{main_w}x{main_h} stream"
                )
        period_ms = 1000 / self.fps
        if self.max_exposure_ms > period_ms:
            raise ValueError(
                f"max_exposure_ms {self.max_exposure_ms:g} is longer than a frame at "
                f"{self.fps:g} fps ({period_ms:.1f} ms)"
            )
        return self

    @property
    def main_size(self) -> tuple[int, int]:
        """The main stream's size: as configured, else the low-resolution stream's."""
        if self.main_width is None or self.main_height is None:
            return self.width, self.height
        return self.main_width, self.main_height


SourceConfig = Annotated[
    FolderSourceConfig | VideoSourceConfig | SyntheticSourceConfig | PiCameraSourceConfig,
    Field(discriminator="kind"),
]


def open_source(config: SourceConfig) -> FrameSource:
    """The frame source ``config`` describes. Raises :class:`SourceError` if it cannot open."""
    if isinstance(config, FolderSourceConfig):
        return FolderSource(config.path, loop=config.loop, fps=config.fps)
    if isinstance(config, VideoSourceConfig):
        return VideoSource(config.path, loop=config.loop, fps=config.fps)
    if isinstance(config, SyntheticSourceConfig):
        params = replace(PRESETS[config.preset], width=config.width, height=config.height)
        scene = SyntheticSource(params, seed=config.seed, fps=config.fps)
        if config.visitors_file is None:
            return scene
        follow = config.visitors_file if config.visitors_follow else None
        codes = [] if follow is not None else read_visitor_codes(config.visitors_file)
        return VisitorScene(
            scene,
            codes,
            config.visitors_per_minute,
            config.visit_frames,
            seed=config.seed,
            follow=follow,
        )
    if isinstance(config, PiCameraSourceConfig):
        return PiCameraSource.from_config(config)
    raise TypeError(f"not a frame source configuration: {config!r}")


class FolderSource:
    """The images of a folder as frames, sorted by file name, converted to grayscale.

    An image that cannot be read is skipped with a warning and counted in
    ``unreadable``; a run of a folder with nothing readable in it is an error when
    looping (it would spin for ever) and simply the end otherwise.
    """

    def __init__(self, path: str | Path, *, loop: bool = False, fps: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise SourceError(f"{self.path}: no such folder")
        self.name = f"folder:{self.path}"
        self.unreadable = 0
        self._loop = loop
        self._pacer = Pacer(fps)
        self._closed = False
        if not self._files():
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise SourceError(f"{self.path}: no images in the folder (looked for {suffixes})")

    def _files(self) -> list[Path]:
        try:
            entries = list(self.path.iterdir())
        except OSError as err:
            raise SourceError(f"{self.path}: cannot list the folder: {err.strerror}") from err
        images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        return sorted(images, key=lambda p: p.name)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while not self._closed:
            delivered = 0
            for file in self._files():
                if self._closed:
                    return
                try:
                    pixels = load_image(file)
                except SourceError as err:
                    self.unreadable += 1
                    logger.warning("skipping an unreadable image: %s", err)
                    continue
                self._pacer.wait()
                yield Frame(pixels, time.monotonic(), index)
                index += 1
                delivered += 1
            if not self._loop:
                return
            if delivered == 0:
                raise SourceError(f"{self.path}: none of the images in the folder can be read")

    def close(self) -> None:
        self._closed = True


class VideoSource:
    """The frames of a video file, through PyAV (FFmpeg), as grayscale."""

    def __init__(self, path: str | Path, *, loop: bool = False, fps: float | None = None) -> None:
        self.path = Path(path)
        self.name = f"video:{self.path}"
        self._loop = loop
        self._pacer = Pacer(fps)
        self._closed = False
        self._iterating = False
        self._lock = threading.Lock()
        try:
            import av
        except ImportError as err:
            raise SourceError("reading videos needs PyAV: pip install av") from err
        self._av: Any = av
        self._container: Any = self._open()

    def _open(self) -> Any:
        try:
            container = self._av.open(str(self.path))
        except (self._av.FFmpegError, OSError, ValueError) as err:
            raise SourceError(f"{self.path}: cannot open video: {_reason(err)}") from err
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.path}: the file has no video stream")
        return container

    def __iter__(self) -> Iterator[Frame]:
        with self._lock:
            if self._iterating:
                raise RuntimeError(f"{self.name} is already being read")
            self._iterating = True
        try:
            yield from self._frames()
        finally:
            with self._lock:
                self._iterating = False
                if self._closed:
                    self._container.close()

    def _frames(self) -> Iterator[Frame]:
        index = 0
        while not self._closed:
            delivered = 0
            for pixels in self._decode():
                self._pacer.wait()
                yield Frame(pixels, time.monotonic(), index)
                index += 1
                delivered += 1
                # Checked before FFmpeg is asked for the next frame: the container may
                # only be closed once decoding has stopped (see close).
                if self._closed:
                    return
            if not self._loop:
                return
            if delivered == 0:
                raise SourceError(f"{self.path}: the video has no frames")
            self._container.close()
            self._container = self._open()

    def _decode(self) -> Iterator[np.ndarray]:
        container = self._container
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # decode on several cores when the codec allows
        try:
            for frame in container.decode(stream):
                pixels: np.ndarray = frame.to_ndarray(format="gray")
                yield pixels
        except (self._av.FFmpegError, OSError, ValueError) as err:
            raise SourceError(f"{self.path}: video stopped decoding: {_reason(err)}") from err

    def close(self) -> None:
        """Stop delivering frames; safe to call from another thread than the reader's."""
        with self._lock:
            self._closed = True
            if self._iterating:
                # Closing the container under a running decode crashes FFmpeg: the
                # reading thread closes it when it stops, after its current frame.
                return
            self._container.close()


def _reason(err: BaseException) -> str:
    strerror = getattr(err, "strerror", None)
    return str(strerror or err or type(err).__name__)


# libcamera's enum values, as picamera2 accepts them in a controls dictionary.
AF_MODE_MANUAL = 0
AF_MODE_CONTINUOUS = 2
AF_RANGE_MACRO = 1


def camera_controls(config: PiCameraSourceConfig, available: Container[str]) -> dict[str, Any]:
    """The controls the camera starts with, given the controls it has (``camera_controls``).

    The frame rate is fixed (both frame duration limits at one period), so exposure can
    never stretch a frame. Focus is set only on a camera with autofocus: continuous in
    the macro range, or a fixed lens position when the configuration gives one; left
    alone, the lens stays at the tuning file's default of about a metre, and a phone
    held at 20 to 40 cm is a blur.
    """
    period_us = round(1_000_000 / config.fps)
    controls: dict[str, Any] = {"FrameDurationLimits": (period_us, period_us)}
    if "AfMode" in available:
        if config.lens_position is None:
            controls["AfMode"] = AF_MODE_CONTINUOUS
            if "AfRange" in available:
                controls["AfRange"] = AF_RANGE_MACRO
        else:
            controls["AfMode"] = AF_MODE_MANUAL
            controls["LensPosition"] = float(config.lens_position)
    return controls


def limit_exposure(agc: dict[str, Any], max_exposure_us: int) -> int:
    """Cap every exposure mode of a camera tuning's ``rpi.agc`` section; modes changed.

    Automatic exposure climbs each mode's ladder of exposure times (``shutter``, called
    ``exposure`` in newer tuning files) and gains; capped, it reaches its brightness
    with gain instead of a long exposure. Both the older layout and the newer one with
    ``channels`` are handled.
    """
    sections = agc.get("channels", [agc])
    changed = 0
    for section in sections:
        modes = section.get("exposure_modes", {}) if isinstance(section, dict) else {}
        for mode in modes.values():
            for key in ("shutter", "exposure"):
                steps = mode.get(key)
                if isinstance(steps, list) and any(v > max_exposure_us for v in steps):
                    mode[key] = [min(v, max_exposure_us) for v in steps]
                    changed += 1
    return changed


# Runs only on a Raspberry Pi.
class PiCameraSource:
    """The Raspberry Pi camera's low-resolution YUV420 stream, Y plane only.

    The decoder needs luminance only, and the ISP scales the lores stream down for free,
    so the Y plane of the lores stream is the cheapest frame there is: no colour
    conversion. ``capture_array`` copies the lores buffer out of the camera's memory
    (one copy of a small frame); the padded rows are then skipped by a strided view,
    without a second copy.

    The main stream, which nothing reads, is as small as the lores stream and has its
    aspect ratio, so the lores picture is not squashed and a Zero 2 W keeps its memory.
    A frame that does not come within ``capture_timeout_s`` is a camera failure, and
    :meth:`close` cancels a pending capture first, so a stalled camera can hold up
    neither the scan loop for ever nor a stopping node.
    """

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        fps: float = 15.0,
        *,
        config: PiCameraSourceConfig | None = None,
    ) -> None:
        if config is None:
            config = PiCameraSourceConfig(width=width, height=height, fps=fps)
        self.config = config
        try:
            from picamera2 import Picamera2
        except ImportError as err:
            raise SourceError(
                "the Pi camera needs picamera2, which exists only on Raspberry Pi OS: "
                "apt install python3-picamera2, and make the virtualenv with "
                "--system-site-packages so it can see it"
            ) from err
        self.name = "picamera2"
        self._closed = False
        self._timeout = config.capture_timeout_s
        tuning = _exposure_tuning(Picamera2, round(config.max_exposure_ms * 1000))
        try:
            camera = Picamera2() if tuning is None else Picamera2(tuning=tuning)
        except (IndexError, RuntimeError, OSError) as err:
            # picamera2 raises IndexError when no camera is attached.
            raise SourceError(f"no camera found: {err}") from err
        self._camera: Any = camera
        try:
            self._check_sensor(camera)
            controls = camera_controls(config, getattr(camera, "camera_controls", {}))
            stream = camera.create_video_configuration(
                main={"size": config.main_size, "format": "YUV420"},
                lores={"size": (config.width, config.height), "format": "YUV420"},
                buffer_count=config.buffers,
                display=None,
                encode=None,
                controls=controls,
            )
            camera.configure(stream)
            lores = camera.stream_configuration("lores")
            # libcamera may round the size to what the ISP can do; use what it chose.
            self.width, self.height = (int(v) for v in lores["size"])
            self.stride = int(lores["stride"])
            camera.start()
        except (RuntimeError, OSError, ValueError, KeyError) as err:
            camera.close()
            raise SourceError(f"cannot start the camera: {err}") from err
        logger.info(
            "camera: lores %dx%d, main %dx%d, %d buffers, %s, exposure at most %.1f ms",
            self.width,
            self.height,
            *config.main_size,
            config.buffers,
            _focus_text(controls),
            config.max_exposure_ms,
        )

    @classmethod
    def from_config(cls, config: PiCameraSourceConfig) -> PiCameraSource:
        return cls(config=config)

    def _check_sensor(self, camera: Any) -> None:
        full = getattr(camera, "sensor_resolution", None)
        if full is None:
            return
        main_w, main_h = self.config.main_size
        if main_w > full[0] or main_h > full[1]:
            raise ValueError(
                f"this camera's sensor gives at most {full[0]}x{full[1]}, "
                f"not a {main_w}x{main_h} stream"
            )

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while not self._closed:
            try:
                buffer = self._camera.capture_array("lores", wait=self._timeout)
            except Exception as err:
                # Whatever picamera2 or libcamera raise here (a timeout, a cancelled
                # capture, a dead camera), the camera is gone; the scan loop turns
                # SourceError into an alarm.
                if self._closed:
                    return
                if isinstance(err, TimeoutError):
                    self._cancel_pending()
                    raise SourceError(
                        f"the camera delivered no frame within {self._timeout:g} s"
                    ) from err
                raise SourceError(f"the camera stopped delivering frames: {err}") from err
            pixels = y_plane(buffer, self.width, self.height, self.stride)
            yield Frame(pixels, time.monotonic(), index)
            index += 1

    def _cancel_pending(self) -> None:
        try:
            self._camera.cancel_all_and_flush()
        except Exception:
            # Only a tidy-up before the camera is closed: log it and go on closing.
            logger.exception("camera: cancelling pending captures failed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A capture waiting on a stalled camera holds picamera2's stop(): cancel it first.
        self._cancel_pending()
        try:
            self._camera.stop()
        finally:
            self._camera.close()


def _focus_text(controls: dict[str, Any]) -> str:
    mode = controls.get("AfMode")
    if mode is None:
        return "fixed-focus lens"
    if mode == AF_MODE_CONTINUOUS:
        return "continuous autofocus, macro range"
    return f"lens fixed at {controls['LensPosition']:g} dioptres"


def _exposure_tuning(picamera2: Any, max_exposure_us: int) -> dict[str, Any] | None:
    """The attached camera's tuning with its exposure capped; None to keep the default.

    Any failure leaves the camera's own tuning, with a warning: a camera that starts
    with its usual exposure beats a door without a camera.
    """
    try:
        cameras = picamera2.global_camera_info()
        if not cameras:
            return None
        model = str(cameras[0]["Model"])
        tuning: dict[str, Any] = picamera2.load_tuning_file(f"{model}.json")
        agc = picamera2.find_tuning_algo(tuning, "rpi.agc")
    except (RuntimeError, OSError, ValueError, KeyError, StopIteration, TypeError) as err:
        logger.warning("camera: exposure left uncapped, tuning file not read: %s", err)
        return None
    if not limit_exposure(agc, max_exposure_us):
        return None
    return tuning
