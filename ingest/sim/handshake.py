"""The WebSocket handshake gate: injected refusals (451/403/429) and Binance's connection-attempt limit.

Binance counts connection *attempts* per IP (300 per 5 minutes since 2023-02), not open connections, and a
client that retries in a tight loop meets a refused handshake, not a closed connection. So the gate sits
before the upgrade: every upgrade request is counted per client address, and a refused one is answered with
an HTTP status and a body like the real one, never upgraded. Refused attempts count toward the window too
(a client that keeps hammering stays refused until it slows down), as a limit on attempts implies.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, field

from websockets.http11 import Response

from ingest.sim.ledger import Stats
from ingest.sim.rest import RESTRICTED_LOCATION, WAF_BLOCKED_HTML, json_response

HANDSHAKE_FAULT_STATUSES = (403, 429, 451)


@dataclass
class AttemptWindow:
    """Sliding window of handshake attempts per client address; ``limit`` 0 turns the rule off."""

    limit: int
    window_s: float
    attempts: dict[str, collections.deque[float]] = field(default_factory=dict)

    def attempt(self, peer: str) -> float | None:
        """Record one attempt; None if it is allowed, else the seconds until the oldest one leaves the window."""
        now = time.monotonic()
        times = self.attempts.setdefault(peer, collections.deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        times.append(now)
        if not self.limit or len(times) <= self.limit:
            return None
        return max(0.0, self.window_s - (now - times[0]))


def refusal(status: int, retry_after: float = 0.0, limit: int = 0, window_s: float = 0.0) -> Response:
    """The HTTP answer to a refused handshake: Binance's 451 JSON, the CDN's 403 HTML, a 429 with Retry-After."""
    if status == 451:
        return json_response(451, RESTRICTED_LOCATION)
    if status == 403:
        return json_response(403, WAF_BLOCKED_HTML, content_type="text/html")
    msg = (f"Too many connection attempts; current limit is {limit} per {window_s:g} seconds."
           if limit else "Too many requests.")
    return json_response(status, {"code": -1003, "msg": msg},
                         {"Retry-After": str(max(1, math.ceil(retry_after)))})


@dataclass
class HandshakeFault:
    status: int
    remaining: int


class HandshakeGate:
    """Decides, before the upgrade, whether a handshake goes ahead; counts every attempt per address."""

    def __init__(self, limit: int, window_s: float, stats: Stats) -> None:
        self.window = AttemptWindow(limit, window_s)
        self.faults: collections.deque[HandshakeFault] = collections.deque()
        self.stats = stats

    def inject(self, status: int, count: int) -> None:
        self.faults.append(HandshakeFault(status, count))

    def check(self, peer: str) -> Response | None:
        """None: go ahead with the upgrade; else the refusal to send instead."""
        self.stats.handshake_attempts[peer] += 1
        wait = self.window.attempt(peer)
        if self.faults:
            fault = self.faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.faults.popleft()
            return self._refuse(fault.status, "fault", wait or 1.0)
        if wait is not None:
            return self._refuse(429, "attempt_limit", wait)
        return None

    def _refuse(self, status: int, reason: str, retry_after: float) -> Response:
        self.stats.handshakes_refused[str(status)] += 1
        self.stats.handshakes_refused_by_reason[reason] += 1
        return refusal(status, retry_after, self.window.limit, self.window.window_s)
