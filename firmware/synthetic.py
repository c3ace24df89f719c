"""A synthetic camera scene: a pass held up in front of a door camera.

The scene is a fixed, textured background (a wall, a door frame, a poster) with, when a
visitor shows a pass, a phone screen carrying the pass's QR code. Each frame varies the
code's size, position, in-plane rotation and tilt, and the focus blur, sensor noise,
exposure and a glare highlight on the screen, so that no two frames are alike and the
decoders meet the same troubles they meet at a real door.

``PRESETS`` holds three difficulties, calibrated against the zxing-cpp backend with a
real pass text (a version 6 code): ``easy`` is read in practically every frame,
``default`` in at least 95 % of them, ``hard`` in well under nine frames out of ten.
``docs/benchmarks.md`` has the measured rates.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import segno
from PIL import Image, ImageDraw, ImageFilter

from firmware.errors import SourceError
from firmware.frames import Frame, Pacer

logger = logging.getLogger(__name__)

__all__ = ["PRESETS", "Jitter", "SceneParams", "SyntheticSource", "render"]

QUIET_ZONE = 4  # modules of light margin around the symbol, as the QR standard asks
_BEZEL = 3  # modules of dark phone body around the quiet zone
_DARK = 30  # gray level of a dark module on a lit phone screen
_LIGHT = 225  # gray level of a light module
_BODY = 45  # gray level of the phone body
_DARK_SCREEN = 22  # a dark-mode screen's background
_LIGHT_ON_DARK = 200  # a dark-mode module, lit
_VIEW_DISTANCE = 2.5  # camera distance, in phone widths: sets how strong a tilt looks
_MAX_TILT_DEG = 55.0  # the tilt at perspective = 1
# A pass is a version 6 code, 41 modules a side. Used only where the text is not at hand
# (keeping the code inside the frame, sizing the glare); rendering counts real modules.
_SYMBOL = 41


@dataclass(frozen=True)
class Jitter:
    """How far each frame strays from the nominal scene: uniform, plus or minus."""

    qr_size: float = 0.0  # fraction of frame height
    angle: float = 0.0  # degrees
    perspective: float = 0.0
    blur: float = 0.0  # pixels of Gaussian radius
    noise: float = 0.0  # gray levels of noise standard deviation
    brightness: float = 0.0  # multiplier
    glare: float = 0.0
    position: float = 0.0  # fraction of the room the code has to move in the frame
    motion: float = 0.0  # pixels


@dataclass(frozen=True)
class SceneParams:
    """One synthetic scene: the nominal values, and the per-frame jitter around them."""

    width: int = 640
    height: int = 480
    qr_size: float = 0.45  # the symbol (without quiet zone) spans this fraction of the height
    angle: float = 0.0  # degrees of in-plane rotation
    perspective: float = 0.0  # 0..1: strength of the tilt (keystone) of the phone
    blur: float = 0.0  # Gaussian blur radius in pixels (focus, motion)
    noise: float = 0.0  # standard deviation of the gray sensor noise
    brightness: float = 1.0  # exposure multiplier
    glare: float = 0.0  # 0..1: strength of a bright elliptical reflection on the screen
    texture: float = 0.5  # 0..1: how busy the background is
    x: float = 0.5  # centre of the code, as a fraction of the width
    y: float = 0.5  # centre of the code, as a fraction of the height
    dark_mode: bool = False  # light modules on a dark screen, as a phone in dark mode shows
    moire: float = 0.0  # 0..1: strength of the interference of screen pixels and sensor
    motion: float = 0.0  # pixels the phone moves while the shutter is open (motion blur)
    cracks: float = 0.0  # 0..1: how cracked and smudged the screen is
    jitter: Jitter = field(default_factory=Jitter)

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 32:
            raise ValueError(f"a scene needs at least 32x32 pixels, got {self.width}x{self.height}")
        if not 0 < self.qr_size <= 1:
            raise ValueError(f"qr_size is a fraction of the frame height, got {self.qr_size}")
        for name in ("perspective", "glare", "texture", "moire", "cracks"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.blur < 0 or self.noise < 0 or self.motion < 0 or self.brightness <= 0:
            raise ValueError("blur and noise must not be negative, brightness must be positive")

    def sample(self, rng: np.random.Generator) -> SceneParams:
        """One frame's concrete scene: every value drawn from its jitter range.

        The result has no jitter left, so rendering it again gives the same geometry.
        """
        j = self.jitter

        def spread(value: float, width: float, low: float, high: float) -> float:
            if width == 0:
                return value
            return min(high, max(low, value + rng.uniform(-width, width)))

        qr_size = spread(self.qr_size, j.qr_size, 0.05, 1.0)
        angle = spread(self.angle, j.angle, -180.0, 180.0)
        perspective = spread(self.perspective, j.perspective, 0.0, 1.0)
        x, y = self.x, self.y
        if j.position:
            # The code wanders, but stays whole in the frame (quiet zone included): a
            # half-visible code is someone walking past, not a pass being shown. The
            # reach allows for the rotation and for the near edge of a tilted phone.
            turn = math.radians(angle)
            reach = abs(math.cos(turn)) + abs(math.sin(turn))
            near = math.sin(math.radians(_MAX_TILT_DEG * perspective)) / 2 / _VIEW_DISTANCE
            half = qr_size * (_SYMBOL + 2 * QUIET_ZONE) / _SYMBOL * reach / (1 - near) / 2
            room_x = max(0.0, 0.5 - half * self.height / self.width)
            room_y = max(0.0, 0.5 - half)
            x = spread(x, j.position * room_x, 0.5 - room_x, 0.5 + room_x)
            y = spread(y, j.position * room_y, 0.5 - room_y, 0.5 + room_y)
        return replace(
            self,
            qr_size=qr_size,
            angle=angle,
            perspective=perspective,
            blur=spread(self.blur, j.blur, 0.0, 50.0),
            noise=spread(self.noise, j.noise, 0.0, 128.0),
            brightness=spread(self.brightness, j.brightness, 0.05, 4.0),
            glare=spread(self.glare, j.glare, 0.0, 1.0),
            motion=spread(self.motion, j.motion, 0.0, 60.0),
            x=x,
            y=y,
            jitter=Jitter(),
        )


PRESETS: dict[str, SceneParams] = {
    # A steady hand, a well-lit door, the phone held square to the camera.
    "easy": SceneParams(
        qr_size=0.55,
        blur=0.4,
        noise=3.0,
        texture=0.3,
        jitter=Jitter(
            qr_size=0.08,
            angle=10.0,
            perspective=0.1,
            blur=0.3,
            noise=2.0,
            brightness=0.1,
            position=0.5,
        ),
    ),
    # What most visitors do: a slight tilt, some rotation, a little blur and a reflection.
    "default": SceneParams(
        qr_size=0.42,
        perspective=0.25,
        blur=0.9,
        noise=6.0,
        glare=0.25,
        texture=0.5,
        jitter=Jitter(
            qr_size=0.12,
            angle=25.0,
            perspective=0.2,
            blur=0.6,
            noise=4.0,
            brightness=0.3,
            glare=0.15,
            position=0.8,
        ),
    ),
    # A hurried visitor in a dim entrance: small, tilted, blurred, noisy, glaring.
    "hard": SceneParams(
        qr_size=0.34,
        perspective=0.45,
        blur=1.1,
        noise=10.0,
        brightness=0.8,
        glare=0.35,
        texture=0.8,
        jitter=Jitter(
            qr_size=0.1,
            angle=60.0,
            perspective=0.3,
            blur=0.8,
            noise=6.0,
            brightness=0.35,
            glare=0.3,
            position=1.0,
        ),
    ),
}

# What phones show at real doors, one trouble at a time on top of the `default` scene.
_DEFAULT = PRESETS["default"]
PRESETS.update(
    {
        # A phone in dark mode: light modules on a dark screen.
        "dark_mode": replace(_DEFAULT, dark_mode=True),
        # The screen's pixel grid beating against the sensor's: fine stripes over the code.
        "moire": replace(_DEFAULT, moire=0.45),
        # A lamp reflected in the screen: a bright spot washing out part of the code.
        "glare_spot": replace(
            _DEFAULT, glare=0.85, jitter=replace(_DEFAULT.jitter, glare=0.1, brightness=0.2)
        ),
        # The phone still moving while the shutter is open: 0.3 m/s at 30 cm for the
        # 12 ms the node's default exposure cap allows is about 5 pixels on a 640-pixel
        # frame 50 cm wide there; up to 7.
        "motion_blur": replace(
            _DEFAULT, blur=0.5, motion=5.0, jitter=replace(_DEFAULT.jitter, blur=0.3, motion=2.0)
        ),
        # The phone turned 45 degrees away from the camera.
        "tilt_45": replace(
            _DEFAULT,
            perspective=45 / _MAX_TILT_DEG,
            jitter=replace(_DEFAULT.jitter, perspective=0.03),
        ),
        # A code held far away: about two pixels a module.
        "far_small": replace(
            _DEFAULT,
            qr_size=0.19,
            blur=0.6,
            jitter=replace(_DEFAULT.jitter, qr_size=0.02, blur=0.3),
        ),
        # A cracked, smudged screen.
        "cracked": replace(_DEFAULT, cracks=0.7),
    }
)


@lru_cache(maxsize=64)
def _modules(text: str) -> np.ndarray:
    """The code's modules with quiet zone and phone body: 0 dark, 1 light, 2 body."""
    # make_qr, not make: segno would pick a Micro QR for a short text, which zbar
    # cannot read and no pass ever is.
    qr = segno.make_qr(text, error="m")
    matrix = np.array(qr.matrix, dtype=bool)
    cells = np.where(matrix, 0, 1).astype(np.uint8)
    cells = np.pad(cells, QUIET_ZONE, constant_values=1)
    cells = np.pad(cells, _BEZEL, constant_values=2)
    cells.flags.writeable = False
    return cells


@lru_cache(maxsize=64)
def _phone(text: str, scale: int, dark_mode: bool = False) -> Image.Image:
    """The phone screen showing ``text``, ``scale`` pixels a module, with an alpha mask."""
    cells = _modules(text)
    levels = [_LIGHT_ON_DARK, _DARK_SCREEN, _BODY] if dark_mode else [_DARK, _LIGHT, _BODY]
    gray = np.array(levels, dtype=np.uint8)[cells]
    gray = np.repeat(np.repeat(gray, scale, axis=0), scale, axis=1)
    alpha = np.full_like(gray, 255)
    return Image.fromarray(np.dstack([gray, alpha]))  # an "LA" image


@lru_cache(maxsize=16)
def _background(width: int, height: int, texture: float) -> Image.Image:
    """The empty scene in front of the door camera. Fixed for a size, like a real wall."""
    rng = np.random.default_rng(0x50494E54)  # fixed: the same door every time
    # Light falls off towards the floor, and walls are never evenly lit.
    gradient = np.linspace(150, 110, height, dtype=np.float32)[:, None]
    clouds_small = rng.normal(0.0, 1.0, (6, 8)).astype(np.float32)
    clouds = np.asarray(
        Image.fromarray(clouds_small).resize((width, height), Image.Resampling.BICUBIC),
        dtype=np.float32,
    )
    base = gradient + clouds * 18.0 * texture
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    # A door frame on each side, a poster, a light switch, a shoulder: edges and corners
    # for the decoder to look at and reject.
    frame_w = max(4, width // 20)
    level = int(90 - 50 * texture)
    draw.rectangle((0, 0, frame_w, height), fill=level)
    draw.rectangle((width - frame_w, 0, width, height), fill=level)
    for _ in range(round(3 + 6 * texture)):
        x0 = int(rng.integers(0, width))
        y0 = int(rng.integers(0, height))
        w = int(rng.integers(width // 20, width // 4))
        h = int(rng.integers(height // 20, height // 4))
        shade = int(rng.integers(40, 220))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=shade)
        else:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=shade)
    # Fine grain: plaster, fabric, printed text seen out of focus.
    grain = rng.normal(0.0, 14.0 * texture, (height, width)).astype(np.float32)
    grain_image = Image.fromarray(np.clip(grain + 128, 0, 255).astype(np.uint8))
    grain = np.asarray(grain_image.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32) - 128
    pixels = np.asarray(image, dtype=np.float32) + grain
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _homography(src: np.ndarray, dst: np.ndarray) -> tuple[float, ...]:
    """The 8 perspective coefficients Pillow wants: they map ``dst`` points to ``src``."""
    rows = []
    rhs = []
    for (sx, sy), (dx, dy) in zip(src, dst, strict=True):
        rows.append([dx, dy, 1, 0, 0, 0, -sx * dx, -sx * dy])
        rows.append([0, 0, 0, dx, dy, 1, -sy * dx, -sy * dy])
        rhs.extend([sx, sy])
    solution = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64))
    return tuple(float(v) for v in solution)


def render(text: str | None, params: SceneParams, rng: np.random.Generator) -> np.ndarray:
    """One camera frame of the scene: ``(height, width)`` uint8, a fresh array.

    With ``text`` the frame shows a phone holding that text as a QR code; with ``None``
    it is the idle scene. ``params`` is jittered with ``rng`` first (see ``PRESETS``).
    """
    p = params.sample(rng)
    scene = _background(p.width, p.height, p.texture).copy()
    box = None if text is None else _place_phone(scene, text, p, rng)
    if box is not None and p.cracks > 0:
        _crack(scene, box, p.cracks, rng)
    if box is not None and p.blur > 0.05:
        # Blur only around the phone: the background is smooth already, and blurring
        # the whole frame would triple the cost of a frame.
        margin = math.ceil(3 * p.blur) + 2
        x0, y0, x1, y1 = box
        around = (
            max(0, x0 - margin),
            max(0, y0 - margin),
            min(p.width, x1 + margin),
            min(p.height, y1 + margin),
        )
        scene.paste(scene.crop(around).filter(ImageFilter.GaussianBlur(p.blur)), around[:2])
    pixels = np.array(scene, dtype=np.float32)
    if box is not None and p.moire > 0:
        _add_moire(pixels, box, p.moire, rng)
    if box is not None and p.motion > 0.5:
        _smear(pixels, box, p.motion, rng)
    if box is not None and p.glare > 0:
        _add_glare(pixels, p, rng)
    return _expose(pixels, p, rng)


def _crack(
    scene: Image.Image, box: tuple[int, int, int, int], strength: float, rng: np.random.Generator
) -> None:
    """Cracks (thin jagged lines, dark or lit) and greasy smudges across the phone."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    draw = ImageDraw.Draw(scene)
    for _ in range(round(2 + 6 * strength)):
        # A crack runs from a point of impact outwards, changing direction as it goes.
        x = x0 + rng.uniform(0.2, 0.8) * w
        y = y0 + rng.uniform(0.2, 0.8) * h
        heading = rng.uniform(0, 2 * math.pi)
        points = [(x, y)]
        for _ in range(int(rng.integers(3, 7))):
            heading += rng.uniform(-0.6, 0.6)
            step = rng.uniform(0.08, 0.25) * max(w, h)
            x += math.cos(heading) * step
            y += math.sin(heading) * step
            points.append((x, y))
        shade = int(rng.choice([15, 235]))
        draw.line(points, fill=shade, width=int(rng.integers(1, 3)))
    for _ in range(round(1 + 3 * strength)):
        # A smudge: a patch where the screen's contrast is smeared out.
        cx, cy = x0 + rng.uniform(0, w), y0 + rng.uniform(0, h)
        r = rng.uniform(0.06, 0.15) * max(w, h)
        patch = (int(cx - r), int(cy - r), int(cx + r), int(cy + r))
        region = scene.crop(patch)
        smeared = region.filter(ImageFilter.GaussianBlur(r / 6))
        mask = Image.new("L", region.size, 0)
        ImageDraw.Draw(mask).ellipse((0, 0, region.size[0] - 1, region.size[1] - 1), fill=180)
        scene.paste(smeared, patch[:2], mask)


def _add_moire(
    pixels: np.ndarray, box: tuple[int, int, int, int], strength: float, rng: np.random.Generator
) -> None:
    """Stripes where the screen's pixel grid beats against the sensor's, over the phone."""
    x0, y0, x1, y1 = box
    period = rng.uniform(2.5, 6.0)  # pixels
    theta = rng.uniform(0, math.pi)
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    phase = (xs * math.cos(theta) + ys * math.sin(theta)) * np.float32(2 * math.pi / period)
    region = pixels[y0:y1, x0:x1]
    # The beat modulates the screen's brightness: light parts swing more than dark ones.
    region *= 1 + np.float32(0.5 * strength) * np.sin(phase + np.float32(rng.uniform(0, 6.28)))


def _smear(
    pixels: np.ndarray, box: tuple[int, int, int, int], length: float, rng: np.random.Generator
) -> None:
    """Motion blur: the phone's region averaged along a straight path ``length`` pixels long."""
    height, width = pixels.shape
    reach = math.ceil(length) + 1
    x0, y0 = max(0, box[0] - reach), max(0, box[1] - reach)
    x1, y1 = min(width, box[2] + reach), min(height, box[3] + reach)
    region = pixels[y0:y1, x0:x1]
    heading = rng.uniform(0, 2 * math.pi)
    steps = max(2, math.ceil(length))
    total = np.zeros_like(region)
    for k in range(steps):
        t = (k / (steps - 1) - 0.5) * length
        total += np.roll(
            region, (round(t * math.sin(heading)), round(t * math.cos(heading))), (0, 1)
        )
    region[...] = total / steps


def _place_phone(
    scene: Image.Image, text: str, p: SceneParams, rng: np.random.Generator
) -> tuple[int, int, int, int] | None:
    """Paste the phone into ``scene``; returns the box it covers, None if off-frame."""
    cells = _modules(text)
    total = cells.shape[0]
    symbol = total - 2 * (QUIET_ZONE + _BEZEL)
    module_px = p.qr_size * p.height / symbol
    # Draw the source at least as fine as the target, so resampling enlarges rather than
    # shrinks (Pillow's transform does not antialias) and module edges stay clean.
    scale = max(2, math.ceil(module_px))
    phone = _phone(text, scale, p.dark_mode)
    src_side = total * scale
    src = np.array([[0, 0], [src_side, 0], [src_side, src_side], [0, src_side]], dtype=float)
    dst = _phone_corners(p, total, module_px, rng)
    x0 = max(0, math.floor(dst[:, 0].min()))
    y0 = max(0, math.floor(dst[:, 1].min()))
    x1 = min(p.width, math.ceil(dst[:, 0].max()) + 1)
    y1 = min(p.height, math.ceil(dst[:, 1].max()) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    coefficients = _homography(src, dst - np.array([x0, y0]))
    patch = phone.transform(
        (x1 - x0, y1 - y0),
        Image.Transform.PERSPECTIVE,
        coefficients,
        resample=Image.Resampling.BILINEAR,
        fillcolor=(0, 0),
    )
    scene.paste(patch.getchannel("L"), (x0, y0), patch.getchannel("A"))
    return x0, y0, x1, y1


def _phone_corners(
    p: SceneParams, total_modules: int, module_px: float, rng: np.random.Generator
) -> np.ndarray:
    half = total_modules * module_px / 2
    square = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    # Tilt: turn the phone about an axis in its own plane, then see it in perspective
    # from a camera a couple of phone widths away.
    tilt = math.radians(_MAX_TILT_DEG * p.perspective)
    axis = rng.uniform(0.0, 2 * math.pi)
    u = np.array([math.cos(axis), math.sin(axis)])
    v = np.array([-u[1], u[0]])
    along = square @ u
    across = square @ v
    depth = across * math.sin(tilt)
    flat = np.outer(along, u) + np.outer(across * math.cos(tilt), v)
    distance = _VIEW_DISTANCE * 2 * half
    projected = flat * (distance / (distance + depth))[:, None]
    theta = math.radians(p.angle)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    centre = np.array([p.x * p.width, p.y * p.height])
    corners: np.ndarray = projected @ rotation.T + centre
    return corners


def _add_glare(pixels: np.ndarray, p: SceneParams, rng: np.random.Generator) -> None:
    """A soft elliptical reflection on the screen, screen-blended so it washes out."""
    side = p.qr_size * p.height  # the symbol's side in pixels
    cx = p.x * p.width + rng.uniform(-0.3, 0.3) * side
    cy = p.y * p.height + rng.uniform(-0.3, 0.3) * side
    a = rng.uniform(0.25, 0.5) * side
    b = a * rng.uniform(0.3, 0.8)
    phi = rng.uniform(0.0, math.pi)
    reach = 2.2 * a  # exp(-r2) is below 1 % beyond
    x0, x1 = max(0, int(cx - reach)), min(p.width, int(cx + reach) + 1)
    y0, y1 = max(0, int(cy - reach)), min(p.height, int(cy + reach) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    dy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
    dx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]
    c, s = math.cos(phi), math.sin(phi)
    r2 = ((dx * c + dy * s) / a) ** 2 + ((-dx * s + dy * c) / b) ** 2
    strength = p.glare * np.exp(-r2)
    region = pixels[y0:y1, x0:x1]
    region += (255.0 - region) * strength


def _expose(pixels: np.ndarray, p: SceneParams, rng: np.random.Generator) -> np.ndarray:
    """Exposure and sensor noise, then back to 8 bits."""
    if p.brightness != 1.0:
        pixels *= np.float32(p.brightness)
    if p.noise > 0:
        # A window at a random place in a larger, fixed noise field: drawing fresh
        # Gaussian noise for every frame would cost more than all the rest of the scene.
        field = _noise_field(p.width, p.height)
        top = int(rng.integers(0, field.shape[0] - p.height + 1))
        left = int(rng.integers(0, field.shape[1] - p.width + 1))
        noise = field[top : top + p.height, left : left + p.width]
        pixels += noise * np.float32(p.noise if rng.random() < 0.5 else -p.noise)
    np.clip(pixels, 0, 255, out=pixels)
    return pixels.astype(np.uint8)


@lru_cache(maxsize=4)
def _noise_field(width: int, height: int) -> np.ndarray:
    """Unit Gaussian noise, twice the frame in each direction, drawn once per size."""
    rng = np.random.default_rng(0x4E4F49)
    field = rng.standard_normal((2 * height, 2 * width), dtype=np.float32)
    field.flags.writeable = False
    return field


@dataclass
class _Showing:
    text: str
    frames_left: int


class SyntheticSource:
    """A synthetic door camera: idle frames until a pass is shown, then the pass.

    ``show(text, frames)`` queues a pass to be held in view for that many frames; it may
    be called from any thread (a simulated visitor) while another thread iterates (the
    scan loop). Passes queued one after another are shown one after another.

    Idle frames are pre-rendered once (``idle_variants`` of them, differing in noise)
    and handed out in turn as read-only arrays, so an idle synthetic camera costs next
    to nothing. ``fail_after=N`` makes iteration raise :class:`SourceError` after N
    frames, as a camera that dies does; ``max_frames`` ends it quietly instead.
    """

    def __init__(
        self,
        params: SceneParams,
        seed: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        *,
        fail_after: int | None = None,
        idle_variants: int = 8,
        name: str = "synthetic",
    ) -> None:
        if idle_variants < 1:
            raise ValueError("idle_variants must be at least 1")
        for option, value in (("max_frames", max_frames), ("fail_after", fail_after)):
            if value is not None and value < 0:
                raise ValueError(f"{option} must not be negative, got {value}")
        self.name = name
        self.params = params
        self._rng = np.random.default_rng(seed)
        self._pacer = Pacer(fps)
        self._max_frames = max_frames
        self._fail_after = fail_after
        self._idle_variants = idle_variants
        self._idle: tuple[np.ndarray, ...] = ()
        self._queue: deque[_Showing] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self._index = 0
        self.frames_with_code = 0

    def show(self, text: str, frames: int) -> None:
        """Hold ``text`` up to the camera for the next ``frames`` frames (after any queued)."""
        if frames < 1:
            raise ValueError(f"a pass is shown for at least one frame, got {frames}")
        with self._lock:
            self._queue.append(_Showing(text, frames))
        logger.debug("%s: showing a code for %d frames", self.name, frames)

    @property
    def pending(self) -> int:
        """Frames with a code still to come."""
        with self._lock:
            return sum(item.frames_left for item in self._queue)

    @property
    def idle_frame_cache(self) -> tuple[np.ndarray, ...]:
        """The pre-rendered idle frames (read-only), rendered on first use."""
        if not self._idle:
            frames = []
            for _ in range(self._idle_variants):
                pixels = render(None, self.params, self._rng)
                pixels.flags.writeable = False  # shared by every idle frame handed out
                frames.append(pixels)
            self._idle = tuple(frames)
        return self._idle

    def _next_text(self) -> str | None:
        with self._lock:
            if not self._queue:
                return None
            item = self._queue[0]
            item.frames_left -= 1
            if item.frames_left == 0:
                self._queue.popleft()
            return item.text

    def __iter__(self) -> Iterator[Frame]:
        while not self._closed:
            index = self._index
            if self._max_frames is not None and index >= self._max_frames:
                return
            if self._fail_after is not None and index >= self._fail_after:
                raise SourceError(f"{self.name}: the camera failed after {index} frames")
            text = self._next_text()
            if text is None:
                idle = self.idle_frame_cache
                pixels = idle[index % len(idle)]
            else:
                pixels = render(text, self.params, self._rng)
                self.frames_with_code += 1
            self._pacer.wait()
            self._index = index + 1
            yield Frame(pixels, time.monotonic(), index)

    def close(self) -> None:
        self._closed = True


class VisitorScene:
    """A synthetic door with a stream of visitors: each holds up one of ``texts``.

    Visitors arrive at random (a Poisson process of ``per_minute``), each showing a code
    chosen at random for ``frames`` frames. The demo and the soak tests feed door nodes
    this way, from a file of codes, with no one at the keyboard. With ``follow``, the codes
    are that file's, read again whenever it changes; while it is empty nobody comes.
    """

    FOLLOW_EVERY_S = 1.0

    def __init__(
        self,
        source: SyntheticSource,
        texts: list[str],
        per_minute: float,
        frames: int = 8,
        seed: int | None = None,
        follow: Path | None = None,
    ) -> None:
        if not texts and follow is None:
            raise SourceError(f"{source.name}: no visitor codes to show")
        if per_minute <= 0:
            raise ValueError("visitors per minute must be positive")
        self.source = source
        self.name = f"{source.name}+visitors"
        self.texts = texts
        self.mean_gap_s = 60.0 / per_minute
        self.frames = frames
        self.visitors = 0
        self._rng = np.random.default_rng(seed)
        self._next = time.monotonic() + self._gap()
        self._follow = follow
        self._follow_seen: tuple[int, int, int] | None = None
        self._follow_at = 0.0

    def _gap(self) -> float:
        return float(self._rng.exponential(self.mean_gap_s))

    def _reread(self, now: float) -> None:
        if self._follow is None or now < self._follow_at:
            return
        self._follow_at = now + self.FOLLOW_EVERY_S
        try:
            stat = self._follow.stat()
            # A file replaced whole within one clock tick keeps its mtime, not its inode.
            seen: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError:
            seen = None
        if seen == self._follow_seen:
            return
        self._follow_seen = seen
        try:
            self.texts = read_visitor_codes(self._follow) if seen is not None else []
        except SourceError as err:
            logger.warning("%s", err)

    def __iter__(self) -> Iterator[Frame]:
        for frame in self.source:
            now = time.monotonic()
            self._reread(now)
            if not self.texts:
                self._next = max(self._next, now)
            elif now >= self._next and self.source.pending == 0:
                self.source.show(self.texts[int(self._rng.integers(len(self.texts)))], self.frames)
                self.visitors += 1
                self._next = now + self._gap()
            yield frame

    def close(self) -> None:
        self.source.close()


def read_visitor_codes(path: str | Path) -> list[str]:
    """One code per line; blank lines and lines starting with ``#`` are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: cannot read visitor codes: {err}") from err
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
