"""Limits on reads of personal data: per token and per client address.

Turning a subject into a person (``GET /persons/{subject}``), a NIK and name into a status
(``POST /lookup``) or a subject into where it was (``GET /tracing``) is what an attacker
holding a hub's token would repeat to harvest the registry. Each caller (a token) and each
address gets a budget of such reads a minute, refilled continuously (a token bucket): a
guard at a desk or an operator tracing one case never meets it, a loop of lookups does at
once. Beyond it the read is refused with 429 and Retry-After, before the store is read.
The tables are bounded, so made-up addresses cannot fill the memory.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from registry.errors import LoginThrottled


class ReadThrottled(LoginThrottled):
    """Too many reads of personal data: try again after ``retry_after_s``."""

    def __init__(self, retry_after_s: float, who: str) -> None:
        super().__init__(retry_after_s)
        self.args = (f"too many reads of personal data by {who}; try again in "
                     f"{max(1, round(retry_after_s))} s",)  # fmt: skip


@dataclass
class _Bucket:
    tokens: float
    at: float


class ReadLimiter:
    """Token buckets of ``per_minute`` reads, keyed by token and by address."""

    def __init__(
        self,
        per_token: int = 60,
        per_address: int = 120,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rates = {"token": per_token, "address": per_address}
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, token: str, address: str, now: float | None = None) -> None:
        """Spend one read of each budget, or raise ``ReadThrottled`` spending none."""
        now = self.clock() if now is None else now
        with self._lock:
            keys = [("token", f"t:{token}"), ("address", f"a:{address}")]
            buckets = []
            for kind, key in keys:
                rate = self.rates[kind]
                bucket = self._buckets.pop(key, None) or _Bucket(float(rate), now)
                bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.at) * rate / 60)
                bucket.at = now
                self._buckets[key] = bucket
                buckets.append((kind, rate, bucket))
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            for kind, rate, bucket in buckets:
                if bucket.tokens < 1:
                    wait = (1 - bucket.tokens) * 60 / rate
                    raise ReadThrottled(wait, "this caller" if kind == "token" else "this address")
            for _, _, bucket in buckets:
                bucket.tokens -= 1
