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
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from firmware.errors import SourceError
from firmware.frames import Frame, FrameSource, Pacer, load_image, y_plane
from firmware.model import StrictModel
from firmware.synthetic import PRESETS, SyntheticSource, VisitorScene, read_visitor_codes

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
    preset: Literal["default", "easy", "hard"] = Field(
        default="default",
        description="How hard the scene makes reading a code: easy, default or hard.",
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


class PiCameraSourceConfig(StrictModel):
    """The Raspberry Pi camera, through picamera2's low-resolution YUV420 stream."""

    kind: Literal["picamera2"] = Field(
        default="picamera2", description="Source type: the Raspberry Pi camera (picamera2)."
    )
    width: Size = Field(
        default=640, description="Width of the low-resolution stream the decoder reads."
    )
    height: Size = Field(default=480, description="Height of the low-resolution stream.")
    fps: Fps = Field(default=15.0, description="Camera frame rate.")


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
        return PiCameraSource(config.width, config.height, config.fps)
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


# Runs only on a Raspberry Pi.
class PiCameraSource:
    """The Raspberry Pi camera's low-resolution YUV420 stream, Y plane only.

    The decoder needs luminance only, and the ISP scales the lores stream down for free,
    so the Y plane of the lores stream is the cheapest frame there is: no colour
    conversion, no copy (the padded rows are skipped by a strided view).
    """

    def __init__(self, width: int = 640, height: int = 480, fps: float = 15.0) -> None:
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
        try:
            camera = Picamera2()
        except (IndexError, RuntimeError, OSError) as err:
            # picamera2 raises IndexError when no camera is attached.
            raise SourceError(f"no camera found: {err}") from err
        self._camera: Any = camera
        try:
            config = camera.create_video_configuration(
                lores={"size": (width, height), "format": "YUV420"},
                controls={"FrameRate": float(fps)},
            )
            camera.configure(config)
            lores = camera.stream_configuration("lores")
            # libcamera may round the size to what the ISP can do; use what it chose.
            self.width, self.height = (int(v) for v in lores["size"])
            self.stride = int(lores["stride"])
            camera.start()
        except (RuntimeError, OSError, ValueError, KeyError) as err:
            camera.close()
            raise SourceError(f"cannot start the camera: {err}") from err

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while not self._closed:
            try:
                buffer = self._camera.capture_array("lores")
            except Exception as err:
                # Whatever picamera2 or libcamera raise here, the camera is gone; the
                # scan loop turns SourceError into an alarm.
                if self._closed:
                    return
                raise SourceError(f"the camera stopped delivering frames: {err}") from err
            pixels = y_plane(buffer, self.width, self.height, self.stride)
            yield Frame(pixels, time.monotonic(), index)
            index += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._camera.stop()
        finally:
            self._camera.close()
