"""Token buckets per caller, in this API process: a burst, then a steady rate.

Each caller (an API key, an OIDC subject, or a client address for failed authentication) has
a bucket of ``burst`` tokens refilled at ``per_s``; a request takes one. An empty bucket
answers :class:`RateLimited` with the whole seconds until a token is back.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from workers.errors import RateLimited

MAX_BUCKETS = 10_000  # past this many callers, full buckets (idle callers) are forgotten


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Buckets of ``burst`` tokens refilled at ``per_s`` tokens per second, one per caller."""

    def __init__(self, per_s: float, burst: int, what: str = "requests") -> None:
        self.per_s = per_s
        self.burst = burst
        self.what = what
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, caller: str) -> None:
        """Take a token of ``caller``'s bucket, or raise :class:`RateLimited`."""
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(caller) or self._new(now)
            self._buckets[caller] = bucket
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.per_s)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait_s = max(1, math.ceil((1.0 - bucket.tokens) / self.per_s))
        raise RateLimited(
            f"too many {self.what}: {self.per_s:g} per second after a burst of {self.burst}; "
            f"retry in {wait_s} s",
            wait_s,
        )

    def _new(self, now: float) -> _Bucket:
        if len(self._buckets) >= MAX_BUCKETS:
            full = self.burst - 1e-9
            for caller, bucket in list(self._buckets.items()):
                if bucket.tokens + (now - bucket.updated) * self.per_s >= full:
                    del self._buckets[caller]
        return _Bucket(tokens=float(self.burst), updated=now)
