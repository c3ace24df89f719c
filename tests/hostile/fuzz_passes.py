"""Coverage-guided fuzzing of the pass decoder, verifier and door policy with atheris.

Run by ``make fuzz``::

    python tests/hostile/fuzz_passes.py -runs=100000 -seed=1

Each input is turned into a text three ways (raw UTF-8, a body after the pass header, a
base32 body after the header), so the fuzzer reaches the signature check, not only the
prefix check. The harness fails on any exception and on any input that is admitted or
answered without a reason; at the end it prints how many inputs it ran and their reasons.
"""

from __future__ import annotations

import base64
import collections
import logging
import sys
import time

import atheris

with atheris.instrument_imports():
    from protocol import passes
    from protocol.policy import Policy, PolicyConfig
    from protocol.status import Status
    from protocol.trust import SigningKey, TrustList

logger = logging.getLogger("fuzz_passes")

KEY = SigningKey.generate()
TRUST = TrustList.of([KEY.trusted()])
NOW = 1_800_000_000
VALID = passes.issue(KEY, bytes(range(12)), Status.GREEN, 2, NOW - 60, NOW + 86_400)
POLICY = Policy(PolicyConfig(anti_passback_s=0), TRUST)
REASONS: collections.Counter[str] = collections.Counter()
STARTED = time.monotonic()
# libFuzzer leaves with os._exit, so the summary is printed when the last run is done.
RUNS = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("-runs=")), 0)
CALLS = [0]


def texts(data: bytes) -> list[str]:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    rest = fdp.ConsumeBytes(fdp.remaining_bytes())
    if mode == 0:
        return [rest.decode("utf-8", errors="replace")]
    if mode == 1:
        return [passes.HEADER + rest.decode("latin-1")]
    if mode == 2:
        return [passes.HEADER + base64.b32encode(rest).decode("ascii").rstrip("=")]
    # The valid pass with the input laid over part of it.
    at = len(rest) % len(VALID) if rest else 0
    return [VALID[:at] + rest.decode("latin-1") + VALID[at + len(rest) :]]


def one_input(data: bytes) -> None:
    CALLS[0] += 1
    try:
        check(data)
    finally:
        if CALLS[0] == RUNS:
            report()


def check(data: bytes) -> None:
    for text in texts(data):
        if text.strip() == VALID:
            continue
        verdict = passes.verify(text, TRUST, now=NOW)
        if verdict.ok or not verdict.message:
            raise AssertionError(f"answered without a refusal: {text!r} -> {verdict}")
        decision = POLICY.decide(text, "entry", NOW)
        if decision.admit or decision.reason != verdict.reason.value or not decision.message:
            raise AssertionError(f"door decision wrong for {text!r}: {decision}")
        REASONS[verdict.reason.value] += 1


def report() -> None:
    total = sum(REASONS.values())
    took = time.monotonic() - STARTED
    logger.warning(
        "%d runs, %d texts refused in %.1f s, 0 exceptions, 0 admitted", CALLS[0], total, took
    )
    for reason, count in REASONS.most_common():
        logger.warning("  %-22s %d", reason, count)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
