"""Limits Binance applies per IP that the worker must respect across all its connections.

- ``AttemptBudget``: Binance allows 300 WebSocket connection attempts per 5 minutes per IP (DESIGN §6); a
  worker that flaps past it gets refused or banned, which is worse than waiting. The budget is a sliding
  window of the worker's own attempts: an attempt that would exceed it *waits* (one log line, a metric)
  until the oldest attempt leaves the window. Rotations and serverShutdown replacements count too, since
  Binance counts every handshake.
- ``LocationRefusal``: HTTP 451 means Binance refuses the region the request comes from. Retrying fast
  cannot help and looks like abuse, so the connection and the REST client retry only every
  ``--location-refused-retry-s``; the operator gets one clear ERROR line (repeated at most hourly while it
  lasts), a ``/readyz`` reason naming 451, and the ``location_refused`` gauge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ingest import metrics

log = logging.getLogger(__name__)

REFUSAL_LOG_EVERY_S = 3600.0
"""While a 451 lasts, its ERROR line is repeated at most this often (each retry is still counted)."""


class AttemptBudget:
    """At most ``max_attempts`` connection attempts in any ``window_s`` seconds; ``acquire`` waits for room."""

    def __init__(self, max_attempts: int, window_s: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        if max_attempts < 1 or window_s <= 0:
            raise ValueError("attempt budget needs max_attempts >= 1 and window_s > 0")
        self.max_attempts = max_attempts
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._times: deque[float] = deque()
        self._lock: asyncio.Lock | None = None

    def wait_s(self) -> float:
        """Seconds until one more attempt fits in the window (0 = now)."""
        now = self._clock()
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        if len(self._times) < self.max_attempts:
            return 0.0
        return self._times[0] + self.window_s - now

    async def acquire(self, who: str = "") -> float:
        """Book one attempt, waiting first while the window is full; returns the seconds waited. Waiters are
        served in order (one lock), so a burst of shards cannot overshoot the budget together."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        waited = 0.0
        async with self._lock:
            while (wait := self.wait_s()) > 0:
                if not waited:
                    metrics.WS_CONNECT_BUDGET_WAITS.inc()
                    log.warning("connection-attempt budget spent (%d attempts in %.0f s): %s waits %.1f s",
                                self.max_attempts, self.window_s, who or "a connection", wait,
                                extra={"connection_id": who, "reason": "attempt_budget", "delay_s": round(wait, 3),
                                       "max_attempts": self.max_attempts, "window_s": self.window_s})
                metrics.WS_CONNECT_BUDGET_WAIT_SECONDS.inc(wait)
                waited += wait
                await self._sleep(wait)
            self._times.append(self._clock())
        metrics.WS_CONNECT_ATTEMPTS.inc()
        return waited


class LocationRefusal:
    """Whether Binance currently refuses this location (HTTP 451), per source (``websocket``, ``rest``)."""

    def __init__(self, retry_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_s = retry_s
        self._clock = clock
        self._refused: dict[str, str] = {}  # source -> what was refused
        self._logged_at: float | None = None

    @property
    def refused(self) -> bool:
        return bool(self._refused)

    def refuse(self, source: str, what: str, body: str = "") -> None:
        """A 451 arrived: the first one (and then at most hourly) is one clear ERROR line."""
        self._refused[source] = what
        metrics.LOCATION_REFUSED.labels(source).set(1)
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < REFUSAL_LOG_EVERY_S:
            log.debug("HTTP 451 again from %s (%s)", source, what, extra={"source": source, "status": 451})
            return
        self._logged_at = now
        detail = f": {body.strip()[:120]}" if body.strip() else ""
        log.error("Binance refuses this location: HTTP 451 on %s (%s)%s, use a host in an allowed region; "
                  "retrying every %.0f s", what, source, detail, self.retry_s,
                  extra={"source": source, "status": 451, "retry_s": self.retry_s})

    def accept(self, source: str) -> None:
        """A request from this source succeeded: the refusal (if any) is over."""
        if self._refused.pop(source, None) is None:
            return
        metrics.LOCATION_REFUSED.labels(source).set(0)
        if not self._refused:
            self._logged_at = None  # a later refusal is news again
        log.info("Binance accepts this location again (%s)", source, extra={"source": source})

    def reason(self) -> str:
        """The /readyz reason, empty when nothing is refused."""
        if not self._refused:
            return ""
        sources = ", ".join(f"{src} ({what})" for src, what in sorted(self._refused.items()))
        return (f"binance: HTTP 451, Binance refuses this location on {sources}; use a host in an allowed "
                f"region (retrying every {self.retry_s:.0f} s)")
