"""Reconnect and retry delays: exponential backoff with full jitter, capped, never giving up.

Why full jitter: after a Binance-side incident every client reconnects at once; drawing the delay
uniformly from ``[0, min(cap, initial * 2**attempt)]`` spreads those attempts out so we do not all hit the
per-IP connection limit in the same second (the "thundering herd"). Why a cap: the worker must keep
trying forever (a dead worker in a healthy pod is worse than a slow reconnect), but never sleep so long
that recovery after the outage takes minutes. Why ``slow_down``: close code 1008 and HTTP 429 mean *we*
were too fast; starting over from a one-second delay would repeat the offence, so the next delay is drawn
from the upper half of the cap instead.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays for consecutive failed attempts; ``reset()`` once a connection proved healthy."""

    def __init__(self, initial_s: float, max_s: float, rand: Callable[[float, float], float] | None = None) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        self.initial_s = initial_s
        self.max_s = max_s
        self._uniform = rand or random.uniform
        self.attempt = 0
        self._slow = False

    def ceiling(self) -> float:
        """Upper bound of the next delay: initial * 2**attempt, capped (computed without overflow)."""
        if self.attempt >= 63:
            return self.max_s
        return min(self.max_s, self.initial_s * (2 ** self.attempt))

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        high = self.ceiling()
        low = 0.0
        if self._slow:
            # 1008 / 429: the server asked us to slow down; never come back sooner than half the cap.
            high = self.max_s
            low = self.max_s / 2
            self._slow = False
        self.attempt += 1
        return self._uniform(low, high)

    def slow_down(self) -> None:
        """The server said we were too fast: the next delay comes from the upper half of the cap, and the
        exponent jumps so later failures stay slow too."""
        self._slow = True
        while self.ceiling() < self.max_s:
            self.attempt += 1

    def reset(self) -> None:
        """A connection delivered data for a healthy period: the next failure starts from scratch."""
        self.attempt = 0
        self._slow = False
