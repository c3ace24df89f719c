"""Decode benchmark: what the frame pipeline costs on top of the QR library, and how often
each backend reads a pass in the synthetic scenes.

    python -m bench.decode                 # print the tables
    python -m bench.decode --write         # ... and put them into docs/benchmarks.md
    python -m bench.decode --frames 100    # a quicker detection run

Every figure is measured beside its baseline in the same run, interleaved in blocks so
that a change of clock speed or a busy neighbour hits both alike:

- the library called directly on a frame held in memory (the baseline), against the
  pipeline a door runs (a FrameSource replaying the same frame from memory, then
  ``Decoder.decode``), on an idle 640x480 frame and on frames with a pass in them;
- detection rates of both backends on the very same synthetic frames.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from firmware.decoder import Decoder, PyzbarDecoder, ZxingDecoder
from firmware.errors import SourceError
from firmware.escalate import EscalatingDecoder
from firmware.frames import Frame, ReplaySource, load_image
from firmware.synthetic import PRESETS, Jitter, render
from protocol.passes import issue
from protocol.status import Status
from protocol.trust import SigningKey

START = "<!-- bench:decode:start -->"
END = "<!-- bench:decode:end -->"
BUDGET = 1.3  # the pipeline may cost at most this many times the bare library call
BLOCK = 25  # timings alternate between baseline and pipeline in blocks of this many

INTRO = """# Benchmarks

Measured with `python -m bench.decode --write` (also `make bench`), which rewrites the
section below. Every figure is measured beside its baseline in the same run (the QR
library called directly on the same frame, interleaved with the pipeline in small
blocks), so the ratios hold even where the absolute times depend on the machine. The
machine each run used is named at the top of its section.

"""


@dataclass(frozen=True)
class Timing:
    """Nanosecond samples of one measured operation."""

    samples: list[int]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples) / 1e6

    @property
    def p95_ms(self) -> float:
        return float(np.percentile(self.samples, 95)) / 1e6


def pass_text() -> str:
    """A real pass: what a door reads (a version 6 QR code at level M)."""
    return issue(
        SigningKey.generate(), bytes(range(12)), Status.GREEN, 2, 1_700_000_000, 1_800_000_000
    )


def side_by_side(
    baseline: Callable[[np.ndarray], object],
    decoder: Decoder,
    images: Sequence[np.ndarray],
    reps: int,
) -> tuple[Timing, Timing]:
    """Time ``baseline(image)`` and source -> decoder on the same images, interleaved.

    The pipeline's time per frame covers taking the frame from the source and decoding
    it, which is all a scan loop does before it looks at the texts.
    """
    for image in images[:3]:  # warm-up: caches, lazy initialisation, CPU clocks
        for _ in range(3):
            baseline(image)
            decoder.decode(image)
    base: list[int] = []
    piped: list[int] = []
    source = ReplaySource(images, loop=True)
    frames: Iterator[Frame] = iter(source)
    clock = time.perf_counter_ns
    decode = decoder.decode
    count = len(images)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection landing in one arm would be charged to it alone
    try:
        done = 0
        while done < reps:
            block = min(BLOCK, reps - done)
            for i in range(done, done + block):
                image = images[i % count]
                start = clock()
                baseline(image)
                base.append(clock() - start)
            for _ in range(block):
                start = clock()
                frame = next(frames)
                decode(frame.pixels)
                piped.append(clock() - start)
            done += block
    finally:
        source.close()
        if gc_was_enabled:
            gc.enable()
    return Timing(base), Timing(piped)


@dataclass(frozen=True)
class Row:
    label: str
    baseline: Timing
    pipeline: Timing

    @property
    def ratio(self) -> float:
        return self.pipeline.median_ms / self.baseline.median_ms

    @property
    def overhead_us(self) -> float:
        return (self.pipeline.median_ms - self.baseline.median_ms) * 1000


def cost_table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| backend | library call, median (p95) | pipeline, median (p95) | pipeline / library "
        "| overhead per frame |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} "
            f"| {row.baseline.median_ms:.3f} ms ({row.baseline.p95_ms:.3f}) "
            f"| {row.pipeline.median_ms:.3f} ms ({row.pipeline.p95_ms:.3f}) "
            f"| {row.ratio:.3f}x "
            f"| {row.overhead_us:+.1f} µs |"
        )
    return lines


class CameraClock:
    """A clock that makes back-to-back decode calls look like frames from a camera.

    Before each frame, :meth:`next_frame` moves the clock on to the moment the camera
    would deliver it (``1 / fps`` after the previous one) if the decoder was quicker than
    that, without sleeping; a decoder slower than the camera sees the frames late, as
    on a real door. The escalating decoder's budget adapts to what it sees here.
    """

    def __init__(self, fps: float) -> None:
        self.period = 1 / fps
        self.skew = 0.0
        self._last: float | None = None

    def __call__(self) -> float:
        return time.perf_counter() + self.skew

    def next_frame(self) -> None:
        now = self()
        if self._last is not None and now < self._last + self.period:
            self.skew += self._last + self.period - now
        self._last = self()


def _scaled(jitter: Jitter, factor: float) -> Jitter:
    return Jitter(**{f.name: getattr(jitter, f.name) * factor for f in fields(Jitter)})


@dataclass
class PresetResult:
    name: str
    frame_rates: list[float]  # per decoder: share of frames read
    visitor_rates: list[float]  # per decoder: share of visitors read within VISIT frames
    medians_ms: list[float]
    p95s_ms: list[float]


VISIT = 3  # a visitor counts as read if any of their first three frames is
FOLLOW = 0.5  # consecutive frames of one visitor stray this share of the preset's jitter


def detection(
    text: str, decoders: Sequence[Callable[[], Decoder]], visitors: int, seed: int, fps: float
) -> list[PresetResult]:
    """Per preset: each decoder's reads over ``visitors`` visitors of VISIT frames each.

    A visitor's first frame is drawn from the preset; the next ones stay near it (the
    same phone a fifteenth of a second later), straying FOLLOW of the preset's jitter.
    Each visitor meets fresh decoders, paced as a camera at ``fps`` would pace them.
    """
    results = []
    for preset_name, params in PRESETS.items():
        rng = np.random.default_rng(seed)
        frame_hits = [0] * len(decoders)
        visitor_hits = [0] * len(decoders)
        times: list[list[int]] = [[] for _ in decoders]
        for _ in range(visitors):
            pose = params.sample(rng)
            follow = replace(pose, jitter=_scaled(params.jitter, FOLLOW))
            frames = [render(text, pose if k == 0 else follow, rng) for k in range(VISIT)]
            for i, make in enumerate(decoders):
                decoder = make()
                clock = getattr(decoder, "camera_clock", None)
                read = False
                for image in frames:
                    if clock is not None:
                        clock.next_frame()
                    start = time.perf_counter_ns()
                    texts = decoder.decode(image)
                    times[i].append(time.perf_counter_ns() - start)
                    frame_hits[i] += texts == [text]
                    read = read or texts == [text]
                visitor_hits[i] += read
        count = visitors * VISIT
        results.append(
            PresetResult(
                preset_name,
                [h / count for h in frame_hits],
                [h / visitors for h in visitor_hits],
                [statistics.median(t) / 1e6 for t in times],
                [float(np.percentile(t, 95)) / 1e6 for t in times],
            )
        )
    return results


def photo_reads(
    folder: Path, decoders: Sequence[Decoder]
) -> tuple[int, list[int], list[list[str]]]:
    """Real photos: each ``NAME.png|jpg|webp`` with its expected text in ``NAME.txt``.

    Returns the number of photos, how many each decoder read (the expected text among
    what it decoded), and the names only the last decoder read.
    """
    photos = 0
    reads = [0] * len(decoders)
    only: list[list[str]] = [[] for _ in decoders]
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in {".png", ".jpg", ".jpeg", ".webp"}:
            continue
        expected_file = path.with_suffix(".txt")
        if not expected_file.is_file():
            continue
        expected = expected_file.read_text(encoding="utf-8", errors="replace")
        try:
            image = load_image(path)
        except SourceError:
            continue
        photos += 1
        got = [expected in decoder.decode(image) for decoder in decoders]
        for i, ok in enumerate(got):
            reads[i] += ok
            if ok and not any(g for j, g in enumerate(got) if j != i):
                only[i].append(str(path.relative_to(folder)))
    return photos, reads, only


def library_versions() -> str:
    names = ["zxing-cpp", "pyzbar", "numpy", "pillow"]
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


# Per-core slowdown of a Raspberry Pi against the machine the benchmark ran on, for the
# estimates below: assumed ranges (see the method in the section), not measurements.
PI_SLOWDOWN = {
    "Pi 4 (Cortex-A72, 1.8 GHz)": (3.0, 5.0),
    "Pi Zero 2 W (Cortex-A53, 1 GHz)": (8.0, 12.0),
}
CAMERA_FPS = 15.0


def run(
    frames: int,
    reps: int,
    seed: int,
    command: str,
    photos: Path | None = None,
    photos_note: str = "",
) -> tuple[str, float]:
    """All measurements; returns the Markdown section and the worst pipeline ratio."""
    import zxingcpp
    from pyzbar import pyzbar

    text = pass_text()
    rng = np.random.default_rng(seed)
    # The idle frame is the default scene at its nominal exposure and noise: how much an
    # empty frame costs depends mostly on its noise, so no random draw decides it.
    idle = render(None, replace(PRESETS["default"], jitter=Jitter()), rng)
    with_pass = [render(text, PRESETS["default"], rng) for _ in range(50)]

    zxing = ZxingDecoder()
    zbar = PyzbarDecoder()
    escalating = EscalatingDecoder()
    qr = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    symbols = [pyzbar.ZBarSymbol.QRCODE]

    # The baselines call each library exactly as its decoder does, so the difference
    # is the pipeline alone; library defaults are shown apart for what they would cost.
    def zxing_raw(image: np.ndarray) -> object:
        return zxingcpp.read_barcodes(
            image, formats=qr, try_rotate=False, try_downscale=True, try_invert=False
        )

    def zxing_defaults(image: np.ndarray) -> object:
        return zxingcpp.read_barcodes(image, formats=qr)

    def zbar_raw(image: np.ndarray) -> object:
        return pyzbar.decode(image, symbols=symbols)

    zbar_reps = max(BLOCK, reps // 4)  # zbar is about ten times slower per frame
    print(f"timing idle frames ({reps} zxing-cpp, {zbar_reps} zbar repetitions) ...", flush=True)
    idle_rows = [
        Row("zxing-cpp", *side_by_side(zxing_raw, zxing, [idle], reps)),
        Row("pyzbar (zbar)", *side_by_side(zbar_raw, zbar, [idle], zbar_reps)),
        Row(
            "escalating (zxing-cpp call as baseline)",
            *side_by_side(zxing_raw, escalating, [idle], reps),
        ),
    ]
    defaults, ours = side_by_side(zxing_defaults, zxing, [idle], reps)
    print("timing frames with a pass ...", flush=True)
    pass_rows = [
        Row("zxing-cpp", *side_by_side(zxing_raw, zxing, with_pass, reps)),
        Row("pyzbar (zbar)", *side_by_side(zbar_raw, zbar, with_pass, zbar_reps)),
    ]
    visitors = max(1, frames // VISIT)
    print(f"detection: {visitors} visitors of {VISIT} frames per preset ...", flush=True)

    def paced() -> Decoder:
        clock = CameraClock(CAMERA_FPS)
        decoder = EscalatingDecoder(clock=clock)
        decoder.camera_clock = clock  # type: ignore[attr-defined]
        return decoder

    makers: list[Callable[[], Decoder]] = [lambda: zxing, lambda: zbar, paced]
    rates = detection(text, makers, visitors, seed, CAMERA_FPS)
    worst = max(row.ratio for row in (*idle_rows, *pass_rows))

    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    esc_idle = idle_rows[2].pipeline.median_ms
    lines = [
        f"Run on {platform.platform()} ({cpu}, {os.cpu_count()} CPUs, load average "
        f"{load:.1f} at the end: the machine was shared), Python {platform.python_version()}; "
        f"{library_versions()}.",
        "",
        f"Command: `{command}`",
        "",
        "### Idle frame (640x480, no code in view: the `default` scene at nominal noise)",
        "",
        "Nearly every frame a door sees has no code in it, so this is the figure that sets "
        "the CPU a node burns. The pipeline is a FrameSource replaying the frame from "
        "memory and `Decoder.decode`; the library call is the same library function with "
        "the same options on the same array. The escalating decoder (the node's default) "
        "is timed against the plain zxing-cpp call: its two cheap looks (zxing-cpp asked "
        "for undecodable symbols too, and a busy-region test on every 4th pixel) are all "
        f"it adds to an empty frame. Budget: pipeline / library <= {BUDGET}x.",
        "",
        *cost_table(idle_rows),
        "",
        f"zxing-cpp with its default options (`try_invert=True`) costs "
        f"{defaults.median_ms:.3f} ms (p95 {defaults.p95_ms:.3f}) on the same frame, against "
        f"{ours.median_ms:.3f} ms for the decoder's options: "
        f"{defaults.median_ms / ours.median_ms:.2f}x. zbar against zxing-cpp, both through "
        f"the pipeline: {idle_rows[1].pipeline.median_ms / idle_rows[0].pipeline.median_ms:.1f}x.",
        "",
        f"### Frames with a pass in view (`default` preset, {len(with_pass)} frames in turn)",
        "",
        *cost_table(pass_rows),
        "",
        f"### Detection rate ({visitors} visitors of {VISIT} frames per preset)",
        "",
        f"Each visitor's first frame is drawn from the preset; the next {VISIT - 1} are the "
        f"same phone a frame later, straying {FOLLOW:.0%} of the preset's jitter around it. "
        "*Frame* is the share of all frames read; *visitor* the share of visitors read in at "
        f"least one of their {VISIT} frames. The escalating decoder is paced as a "
        f"{CAMERA_FPS:g} fps camera paces it (its budget per frame is "
        f"{escalating.share:.0%} of the time between frames, at most "
        f"{escalating.budget_ms:g} ms); the times are per frame, escalation included. "
        "The presets below `hard` are what phones show at doors, one trouble each on the "
        "`default` scene (firmware/synthetic.py).",
        "",
        "| preset | zxing-cpp frame | zbar frame | escalating frame | zxing-cpp visitor "
        "| zbar visitor | escalating visitor | zxing-cpp median | zbar median "
        "| escalating median (p95) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rates:
        lines.append(
            f"| {r.name} | {r.frame_rates[0]:.1%} | {r.frame_rates[1]:.1%} "
            f"| {r.frame_rates[2]:.1%} | {r.visitor_rates[0]:.1%} | {r.visitor_rates[1]:.1%} "
            f"| **{r.visitor_rates[2]:.1%}** | {r.medians_ms[0]:.2f} ms | {r.medians_ms[1]:.2f} ms "
            f"| {r.medians_ms[2]:.2f} ms ({r.p95s_ms[2]:.1f}) |"
        )
    if photos is not None:
        print(f"real photos in {photos} ...", flush=True)
        # Exactly as `pintu decode` makes it: every photo escalated, the whole budget each.
        from pintu.commands.decode import PHOTO_BUDGET_MS

        generous = EscalatingDecoder(budget_ms=PHOTO_BUDGET_MS, always=True)
        count, reads, only = photo_reads(photos, [zxing, zbar, generous])
        lines += [
            "",
            f"### Real photos of QR codes ({count} photos)",
            "",
            "Photos with their expected text beside them (`--photos DIR`: `NAME.png|jpg|webp` "
            "and `NAME.txt`); a photo counts as read when its text is among what the decoder "
            "returned. The escalating decoder gets the budget `pintu decode` gives it "
            "(500 ms: a technician's photo is not a camera stream)."
            + (f" {photos_note}" if photos_note else ""),
            "",
            "| decoder | photos read | read by this decoder alone |",
            "| --- | ---: | ---: |",
            f"| zxing-cpp | {reads[0]} / {count} | {len(only[0])} |",
            f"| pyzbar (zbar) | {reads[1]} / {count} | {len(only[1])} |",
            f"| escalating | {reads[2]} / {count} | {len(only[2])} |",
        ]
    lines += [
        "",
        "### On a Raspberry Pi: an estimate",
        "",
        "Not measured on a Pi. Method: the per-frame costs measured above, multiplied by an "
        "assumed per-core slowdown of each Pi against this machine (a range, as single-core "
        "benchmarks of these CPUs differ by workload); one core decodes, the scan loop being "
        f"one thread. A {CAMERA_FPS:g} fps camera gives {1000 / CAMERA_FPS:.1f} ms per frame. "
        "Run `python -m bench.decode` on the Pi to replace these with figures.",
        "",
        "| board | assumed slowdown | idle frame, escalating | share of one core at "
        f"{CAMERA_FPS:g} fps idle | escalation budget per frame |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    period_ms = 1000 / CAMERA_FPS
    budget_ms = min(escalating.budget_ms, escalating.share * period_ms)
    for board, (low, high) in PI_SLOWDOWN.items():
        lines.append(
            f"| {board} | {low:g}-{high:g}x | {esc_idle * low:.1f}-{esc_idle * high:.1f} ms "
            f"| {esc_idle * low / period_ms:.0%}-{esc_idle * high / period_ms:.0%} "
            f"| {budget_ms:.0f} ms wall, worth {budget_ms / high:.1f}-{budget_ms / low:.1f} ms "
            "here |"
        )
    lines += [
        "",
        "The budget is wall time, so on a slower board escalation gets through fewer of its "
        "steps per frame (they are tried cheapest and likeliest first) and the visitor "
        "rates above drop towards the per-frame ones; the idle cost keeps the camera's "
        "frame rate on both boards.",
        "",
        f"Worst pipeline / library ratio in this run: {worst:.3f}x "
        f"({'within' if worst <= BUDGET else 'OVER'} the {BUDGET}x budget).",
    ]
    return "\n".join(lines), worst


def write_section(path: Path, section: str) -> None:
    """Replace the text between the markers in ``path`` (creating the file if need be)."""
    block = f"{START}\n{section}\n{END}"
    if path.exists():
        document = path.read_text(encoding="utf-8")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = INTRO
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if pattern.search(document):
        document = pattern.sub(lambda _: block, document, count=1)
    else:
        heading = "## Decoding\n\n"
        document = document.rstrip("\n") + "\n\n" + heading + block + "\n"
    path.write_text(document, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.decode",
        description="Time the decode pipeline against the bare QR libraries, and measure "
        "detection rates on synthetic scenes.",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=600,
        help="synthetic frames per preset, in visitors of three (default 600)",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=2000,
        help="timed repetitions per zxing-cpp measurement; zbar gets a quarter (default 2000)",
    )
    parser.add_argument("--seed", type=int, default=2024, help="seed of the synthetic scenes")
    parser.add_argument(
        "--photos",
        type=Path,
        default=None,
        help="a folder of real photos of QR codes, each with its text in NAME.txt",
    )
    parser.add_argument(
        "--photos-note",
        default="",
        help="a sentence saying where the --photos came from, put beside their table",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs/benchmarks.md"),
        help="the file --write updates (default docs/benchmarks.md)",
    )
    parser.add_argument(
        "--write", action="store_true", help="replace the decode section of --out with the results"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit with status 1 if the pipeline costs more than {BUDGET}x the library",
    )
    args = parser.parse_args(argv)
    if args.frames < 1 or args.reps < 1:
        parser.error("--frames and --reps must be at least 1")

    shown = ["python -m bench.decode"]
    if args.frames != 600:
        shown.append(f"--frames {args.frames}")
    if args.reps != 2000:
        shown.append(f"--reps {args.reps}")
    if args.seed != 2024:
        shown.append(f"--seed {args.seed}")
    if args.photos is not None:
        shown.append("--photos DIR")
    section, worst = run(
        args.frames, args.reps, args.seed, " ".join(shown), args.photos, args.photos_note
    )
    print()
    print(section)
    if args.write:
        write_section(args.out, section)
        print(f"\nwrote {args.out}")
    if args.check and worst > BUDGET:
        print(f"pipeline overhead over budget: {worst:.3f}x > {BUDGET}x", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
