"""The simulator's settings: one dataclass, filled from ``ingest sim``'s flags (see ingest/sim/cli.py).

These are not worker options (ingest/config.py holds those): they describe the fake exchange, and the
defaults are Binance's own numbers so that a plain ``ingest sim`` behaves like the real thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CAPTURES = REPO_ROOT.parent / "shared" / "data" / "binance-captures"
DEFAULT_EXCHANGE_INFO = CAPTURES / "exchangeInfo-2021-10-12.json"
DEFAULT_SEED_PRICES = CAPTURES / "ticker24hr.json"


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 0
    exchange_info: str | None = None
    replay: str | None = None
    replay_timing: str = "event"  # "event": follow the frames' E; "fast": as fast as the clients read
    replay_speed: float = 1.0
    replay_start_clients: int = 1
    symbols: int | None = None
    rate: float | None = None  # tickers per second over all symbols; None = every TRADING symbol each interval
    interval: float = 1.0
    seed: int | None = None
    seed_prices: str | None = None
    sent_log: str | None = None
    ping_interval: float = 20.0
    pong_timeout: float = 60.0
    max_lifetime: float = 24 * 3600.0
    max_connections_per_ip: int = 0  # 0 = off: Binance documents no concurrent limit (our own caution, for tests)
    max_connection_attempts: int = 300  # per client address per window (Binance, since 2023-02); 0 = off
    connection_attempt_window: float = 300.0
    max_messages_per_second: int = 5
    max_streams: int = 1024
    rest_weight_limit: int = 6000  # per minute per address (Binance since 2023-08; 1200 before)
    rest_weight_window: float = 60.0
    rest_ban_after: int = 2
    rest_ban_seconds: float = 120.0
    serve_retired_streams: bool = False  # serve !ticker@arr as before its retirement (replays, benchmarks)
    max_queue_frames: int = 10_000
    close_timeout: float = 2.0
    max_frame_bytes: int = 1 << 20
    faults: list[dict[str, Any]] = field(default_factory=list)
    duration: float | None = None
    exit_on_stdin_eof: bool = False
