"""Ground truth for tests: counters served at ``/_sim/stats`` and the sent-log of every ticker sent.

A test proves that what reached Kafka equals what was sent; for that it needs the simulator's own record
of each ticker delivered to each connection, and of each fault frame kept apart from it. The sent-log is
written with plain string formatting around the exact ticker text that went on the wire, so the ``data``
member of a line is byte for byte what the client received (inside its array or envelope).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

SENT_LINE = '{"stream":%s,"kind":"%s","symbol":"%s","E":%d,"conn":%d,"data":%s}\n'


class Stats:
    """Counters; ``snapshot`` is what ``GET /_sim/stats`` returns."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.started = time.time()
        self.tickers_sent: Counter[str] = Counter()
        self.frames_sent = 0
        self.bytes_sent = 0
        self.connections_open = 0
        self.connections_total = 0
        self.connections_rejected: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.malformed_sent: Counter[str] = Counter()
        self.duplicates_sent = 0
        self.frames_dropped: Counter[str] = Counter()
        self.messages_received = 0
        self.rest_requests: Counter[str] = Counter()
        self.rest_status: Counter[str] = Counter()
        self.pings_sent = 0
        self.control_frames_received = 0  # client pings and pongs: they count toward the message limit
        self.retired_subscriptions: Counter[str] = Counter()  # subscriptions to retired streams (never served)
        self.server_shutdowns_sent = 0  # serverShutdown events written (never counted as tickers)
        self.handshake_attempts: Counter[str] = Counter()  # every upgrade request, by client address
        self.handshakes_refused: Counter[str] = Counter()  # by HTTP status
        self.handshakes_refused_by_reason: Counter[str] = Counter()  # "fault", "attempt_limit"
        self.replay_finished = False
        self.replay_frames_total = 0
        self.replay_frames_done = 0
        self.generated_ticks = 0
        self.generated_tickers = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "uptime_s": round(time.time() - self.started, 3),
            "tickers_sent": {"total": sum(self.tickers_sent.values()), **self.tickers_sent},
            "frames_sent": self.frames_sent,
            "bytes_sent": self.bytes_sent,
            "connections_open": self.connections_open,
            "connections_total": self.connections_total,
            "connections_rejected": dict(self.connections_rejected),
            "closes": dict(self.closes),
            "malformed_sent": {"total": sum(self.malformed_sent.values()), **self.malformed_sent},
            "duplicates_sent": self.duplicates_sent,
            "frames_dropped": dict(self.frames_dropped),
            "messages_received": self.messages_received,
            "rest_requests": {"total": sum(self.rest_requests.values()), **self.rest_requests},
            "rest_status": dict(self.rest_status),
            "pings_sent": self.pings_sent,
            "control_frames_received": self.control_frames_received,
            "server_shutdowns_sent": self.server_shutdowns_sent,
            "retired_subscriptions": dict(self.retired_subscriptions),
            "handshake_attempts": {"total": sum(self.handshake_attempts.values()), **self.handshake_attempts},
            "handshakes_refused": {"total": sum(self.handshakes_refused.values()), **self.handshakes_refused},
            "handshakes_refused_by_reason": dict(self.handshakes_refused_by_reason),
            "replay_finished": self.replay_finished,
            "replay_frames_total": self.replay_frames_total,
            "replay_frames_done": self.replay_frames_done,
            "generated_ticks": self.generated_ticks,
            "generated_tickers": self.generated_tickers,
        }


class SentLog:
    """Appends JSON Lines; a no-op when no path was given so the hot path costs one attribute check."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._file: IO[str] | None = self.path.open("w", encoding="utf-8") if self.path else None

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def tickers(self, stream_json: str, kind: str, entries: list[tuple[str, int, str]], conn: int) -> None:
        """One line per ticker; ``stream_json`` is the stream name already JSON-quoted."""
        if self._file is None:
            return
        self._file.write("".join([SENT_LINE % (stream_json, kind, sym, e, conn, data) for sym, e, data in entries]))
        self._file.flush()  # once per frame: a test may read the log as soon as the client has the frame

    def fault(self, fault: str, conn: int, **details: Any) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps({"fault": fault, "conn": conn, "time": time.time(), **details}) + "\n")
        self._file.flush()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
