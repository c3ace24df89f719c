"""The scan loop: frames in, fresh pass texts out to the door.

Runs on its own thread, so a slow decode never holds up GPIO or MQTT. The same code seen
in consecutive frames is one visitor holding up a phone: it is handed on once, and again
only after it has been out of view for the cooldown. A camera that fails raises an alarm,
marks the node degraded and is reopened after a pause; frames the decoder cannot read are
counted, never fatal. The systemd watchdog is petted from this loop, so a scan loop that
hangs is a node systemd restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from controller.door import Alarm, Door, Scan
from firmware.decoder import Decoder
from firmware.errors import SourceError
from firmware.frames import FrameSource
from protocol.enrolment import is_provisioning_text
from runtime.notify import Notifier

logger = logging.getLogger(__name__)

REFUSED_RUN = 30  # frames in a row the decoder refuses before the door reports it


class Deduper:
    """Remembers each text's last sighting; a text is fresh after ``cooldown_s`` unseen."""

    def __init__(self, cooldown_s: float) -> None:
        self.cooldown_s = cooldown_s
        self._seen: dict[str, float] = {}

    def fresh(self, text: str, now: float) -> bool:
        last = self._seen.get(text)
        self._seen[text] = now
        if len(self._seen) > 1000:
            cutoff = now - self.cooldown_s
            self._seen = {t: s for t, s in self._seen.items() if s >= cutoff}
        return last is None or now - last >= self.cooldown_s


@dataclass
class ScanStats:
    frames: int = 0
    codes: int = 0
    handed_on: int = 0
    source_failures: int = 0


class Scanner:
    def __init__(
        self,
        *,
        open_source: Callable[[], FrameSource],
        decoder: Decoder,
        door: Door,
        cooldown_s: float,
        restart_after_s: float,
        notifier: Notifier,
        on_health: Callable[[str | None], None],
        on_decoder: Callable[[str | None], None] | None = None,
    ) -> None:
        self.open_source = open_source
        self.decoder = decoder
        self.door = door
        self.deduper = Deduper(cooldown_s)
        self.restart_after_s = restart_after_s
        self.notifier = notifier
        self.on_health = on_health  # a problem text, or None when the camera is fine
        self.on_decoder = on_decoder  # a problem text, or None when the decoder reads again
        self._refused_run = 0  # frames in a row the decoder refused
        self.stats = ScanStats()
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: FrameSource | None = None
        self._failing = False

    @property
    def bad_frames(self) -> int:
        return int(getattr(self.decoder, "bad_frames", 0))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scan", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        source = self._source
        if source is not None:
            source.close()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._source = self.open_source()
                    finished = self._scan(self._source)
                except Exception as err:
                    # A source may fail in ways it does not foresee (an OSError from a
                    # driver, a bug): that is a camera failure too, never a scan loop
                    # that ends in silence while the node still says it is fine.
                    if not isinstance(err, SourceError):
                        logger.exception("frame source failed unexpectedly")
                    self._camera_failed(str(err) or type(err).__name__)
                    # Wait, but wake at once on stop; keep the watchdog fed meanwhile:
                    # the loop is alive and retrying, which is what systemd should see.
                    deadline = time.monotonic() + self.restart_after_s
                    while not self._stop.wait(min(1.0, self.restart_after_s)):
                        self.notifier.pet()
                        if time.monotonic() >= deadline:
                            break
                    continue
                finally:
                    if self._source is not None:
                        self._source.close()
                        self._source = None
                if finished:
                    logger.info("frame source ended after %d frames", self.stats.frames)
                    self.on_health("camera: frame source ended")
                    return
        finally:
            self.ended.set()

    def _scan(self, source: FrameSource) -> bool:
        """Scan until stopped (False) or the source runs out (True)."""
        healthy = False
        for frame in source:
            if self._stop.is_set():
                return False
            if not healthy:
                healthy = True
                self._failing = False
                self.on_health(None)
            self.notifier.pet()
            self.stats.frames += 1
            refused_before = self.bad_frames
            texts = self.decoder.decode(frame.pixels)
            self._count_refusals(self.bad_frames > refused_before)
            for text in texts:
                self.stats.codes += 1
                if not self.deduper.fresh(text, frame.ts):
                    continue
                if is_provisioning_text(text):
                    # The node has its configuration: a provisioning QR is no visitor.
                    logger.info("ignored a provisioning QR: this node is provisioned already")
                    continue
                self.stats.handed_on += 1
                self.door.submit(Scan(text, frame.ts))
        return not self._stop.is_set()

    def _count_refusals(self, refused: bool) -> None:
        """A decoder that refuses frame after frame is an error the door reports.

        One bad frame is nothing (a camera glitch); every frame for REFUSED_RUN frames
        is a decoder that cannot work here (a library too old, frames of a format it
        cannot take): the door would never read a pass, so it says so.
        """
        if refused:
            self._refused_run += 1
            if self._refused_run == REFUSED_RUN:
                reason = getattr(self.decoder, "last_error", None) or "unknown reason"
                logger.error(
                    "decoder %s refused the last %d frames: %s",
                    self.decoder.name,
                    REFUSED_RUN,
                    reason,
                )
                if self.on_decoder is not None:
                    self.on_decoder(f"decoder: refuses every frame: {reason}"[:200])
            return
        if self._refused_run >= REFUSED_RUN:
            logger.info("decoder %s reads frames again", self.decoder.name)
            if self.on_decoder is not None:
                self.on_decoder(None)
        self._refused_run = 0

    def _camera_failed(self, reason: str) -> None:
        self.stats.source_failures += 1
        logger.error("camera failed: %s", reason)
        self.on_health(f"camera: {reason}"[:200])
        if not self._failing:
            # One alarm per failure, not one per retry.
            self._failing = True
            self.door.submit(Alarm("camera_failed", reason[:200]))
