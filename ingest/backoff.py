"""Reconnect and retry delays: exponential backoff with full jitter, capped, never giving up.

Why full jitter: after a Binance-side incident every client reconnects at once; drawing the delay
uniformly from ``[0, min(cap, initial * 2**attempt)]`` spreads those attempts out so we do not all hit the
per-IP connection-attempt limit in the same second (the "thundering herd"). Why a small cap (5 s by
default): Binance's reference asks for reconnects within 1-5 s, and an ordinary close (a network blip, the
24 h limit) says nothing about our behaviour, so waiting a minute would only lose data. Why ``slow_down``
with a separate, larger cap: close 1008 and HTTP 429/403/418 mean *we* were too fast; coming back after a
second would repeat the offence (and repeat offenders get banned), so the next delay is drawn from the upper
half of the slow cap instead. Only the exchange's own signals slow us down that far.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays for consecutive failed attempts; ``reset()`` once a connection proved healthy."""

    def __init__(self, initial_s: float, max_s: float, rand: Callable[[float, float], float] | None = None, *,
                 slow_s: float | None = None) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if slow_s is not None and slow_s < max_s:
            raise ValueError("backoff needs slow_s >= max_s")
        self.initial_s = initial_s
        self.max_s = max_s
        self.slow_s = max_s if slow_s is None else slow_s
        self._uniform = rand or random.uniform
        self.attempt = 0
        self._slow = False

    def ceiling(self) -> float:
        """Upper bound of the next ordinary delay: initial * 2**attempt, capped (computed without overflow)."""
        if self.attempt >= 63:
            return self.max_s
        return min(self.max_s, self.initial_s * (2.0 ** self.attempt))

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        high = self.ceiling()
        low = 0.0
        if self._slow:
            # 1008 / 429 / 403: the server asked us to slow down; never come back sooner than half the slow cap.
            high = self.slow_s
            low = self.slow_s / 2
            self._slow = False
        self.attempt += 1
        return self._uniform(low, high)

    def slow_down(self) -> None:
        """The server said we were too fast: the next delay comes from the upper half of the slow cap, and the
        exponent jumps so later ordinary failures draw from the whole ordinary cap."""
        self._slow = True
        while self.ceiling() < self.max_s:
            self.attempt += 1

    def reset(self) -> None:
        """A connection delivered data for a healthy period: the next failure starts from scratch."""
        self.attempt = 0
        self._slow = False
