"""``ingest sim``: flags -> SimConfig -> a running Simulator that prints its base URLs on stdout.

The two URL lines (``ws://host:port`` then ``http://host:port``) are the only stdout output, so a parent
process (the test fixture, the demo) can read them; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ingest.config import ConfigError
from ingest.sim.faults import FaultError, parse_cli_fault
from ingest.sim.settings import DEFAULT_EXCHANGE_INFO, DEFAULT_SEED_PRICES, SimConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SimConfig()
    add = parser.add_argument
    add("--host", default=d.host, help="address to bind (default %(default)s)")
    add("--port", type=int, default=d.port, help="port; 0 picks a free one (default %(default)s)")
    src = parser.add_argument_group("data source")
    src.add_argument("--exchange-info", metavar="FILE",
                     help=f"recorded exchangeInfo: generate live-looking data for its symbols "
                          f"(default {DEFAULT_EXCHANGE_INFO} when neither this nor --replay is given)")
    src.add_argument("--replay", metavar="FILE", help="replay recorded frames from a JSON Lines file")
    src.add_argument("--replay-timing", choices=("event", "fast"), default=d.replay_timing,
                     help="follow the frames' E ('event') or send as fast as clients read ('fast')")
    src.add_argument("--replay-speed", type=float, default=d.replay_speed, help="speed-up factor for 'event' timing")
    src.add_argument("--replay-start-clients", type=int, default=d.replay_start_clients,
                     help="start the replay when this many connections have subscribed (default %(default)s)")
    src.add_argument("--symbols", type=int, help="number of TRADING symbols to generate (fewer or more than "
                                                  "recorded; extra ones are cloned from recorded symbols)")
    src.add_argument("--rate", type=float, help="tickers per second over all symbols (default: every TRADING "
                                                "symbol changes in every interval)")
    src.add_argument("--interval", type=float, default=d.interval,
                     help="array push interval in seconds, down to 0.001 (default %(default)s)")
    src.add_argument("--seed", type=int, help="random seed: the same seed gives the same prices")
    src.add_argument("--seed-prices", metavar="FILE",
                     help=f"recorded ticker/24hr array for initial prices (default {DEFAULT_SEED_PRICES} if present; "
                          "'none' to disable)")
    add("--sent-log", metavar="FILE", help="write every ticker sent (and every fault frame) as JSON Lines")
    rules = parser.add_argument_group("Binance rules")
    rules.add_argument("--ping-interval", type=float, default=d.ping_interval, help="seconds between server pings")
    rules.add_argument("--pong-timeout", type=float, default=d.pong_timeout, help="seconds to wait for a pong")
    rules.add_argument("--max-lifetime", type=float, default=d.max_lifetime, help="connection lifetime in seconds")
    rules.add_argument("--max-connections-per-ip", type=int, default=d.max_connections_per_ip,
                       help="open connections per client address; more are closed with 1008 (default 0 = off: "
                            "Binance documents no such limit)")
    rules.add_argument("--max-connection-attempts", type=int, default=d.max_connection_attempts,
                       help="WebSocket handshakes per client address per window; more are refused with HTTP 429 "
                            "(default %(default)s; 0 = off)")
    rules.add_argument("--connection-attempt-window", type=float, default=d.connection_attempt_window,
                       help="sliding window of --max-connection-attempts in seconds (default %(default)s)")
    rules.add_argument("--max-messages-per-second", type=int, default=d.max_messages_per_second,
                       help="incoming messages per second per connection; more closes it with 1008")
    rules.add_argument("--max-streams", type=int, default=d.max_streams, help="streams per connection")
    rules.add_argument("--rest-weight-limit", type=int, default=d.rest_weight_limit,
                       help="REST request weight per window per address")
    rules.add_argument("--rest-weight-window", type=float, default=d.rest_weight_window,
                       help="length of the weight window in seconds (Binance: 60)")
    rules.add_argument("--rest-ban-after", type=int, default=d.rest_ban_after,
                       help="requests answered 429 in one window before a 418 ban")
    rules.add_argument("--rest-ban-seconds", type=float, default=d.rest_ban_seconds, help="length of a 418 ban")
    rules.add_argument("--serve-retired-streams", action="store_true",
                       help="serve !ticker@arr (retired by Binance on 2026-03-26) as before; by default a subscription "
                            "to it succeeds and nothing is ever sent on it")
    rules.add_argument("--max-queue-frames", type=int, default=d.max_queue_frames,
                       help="frames queued for one connection before it is closed as a slow consumer")
    add("--fault", action="append", default=[], metavar="SPEC",
        help="fault at start or on a schedule, e.g. 'close:code=1006,at=5,every=30' or "
             "'malformed:kind=invalid_json,count=3,at=2' (repeatable)")
    add("--duration", type=float, help="stop by itself after this many seconds")
    add("--exit-on-stdin-eof", action="store_true", help="stop when stdin closes (used by test fixtures)")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    exchange_info = args.exchange_info
    if not exchange_info and not args.replay:
        if not DEFAULT_EXCHANGE_INFO.exists():
            raise ConfigError(f"--exchange-info or --replay is required ({DEFAULT_EXCHANGE_INFO} not found)")
        exchange_info = str(DEFAULT_EXCHANGE_INFO)
    for label, path in (("--exchange-info", exchange_info), ("--replay", args.replay)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{label}: no such file: {path}")
    seed_prices = args.seed_prices
    if seed_prices is None and DEFAULT_SEED_PRICES.exists():
        seed_prices = str(DEFAULT_SEED_PRICES)
    if seed_prices == "none":
        seed_prices = None
    if args.interval < 0.001:
        raise ConfigError("--interval must be at least 0.001 s")
    try:
        faults = [parse_cli_fault(spec) for spec in args.fault]
    except FaultError as exc:
        raise ConfigError(str(exc)) from exc
    return SimConfig(
        host=args.host, port=args.port, exchange_info=exchange_info, replay=args.replay,
        replay_timing=args.replay_timing, replay_speed=args.replay_speed,
        replay_start_clients=args.replay_start_clients, symbols=args.symbols, rate=args.rate,
        interval=args.interval, seed=args.seed, seed_prices=seed_prices, sent_log=args.sent_log,
        ping_interval=args.ping_interval, pong_timeout=args.pong_timeout, max_lifetime=args.max_lifetime,
        max_connections_per_ip=args.max_connections_per_ip,
        max_connection_attempts=args.max_connection_attempts,
        connection_attempt_window=args.connection_attempt_window, max_messages_per_second=args.max_messages_per_second,
        max_streams=args.max_streams, rest_weight_limit=args.rest_weight_limit,
        rest_weight_window=args.rest_weight_window, rest_ban_after=args.rest_ban_after,
        rest_ban_seconds=args.rest_ban_seconds, serve_retired_streams=args.serve_retired_streams,
        max_queue_frames=args.max_queue_frames, faults=faults,
        duration=args.duration, exit_on_stdin_eof=args.exit_on_stdin_eof,
    )


def main(args: argparse.Namespace) -> int:
    from ingest.sim.server import Simulator  # imported here so `ingest --help` stays fast

    cfg = config_from_args(args)

    def ready(ws_url: str, http_url: str) -> None:
        print(ws_url, flush=True)
        print(http_url, flush=True)
        trading = len(sim.universe.trading())
        source = f"replay {cfg.replay}" if cfg.replay else f"generating {trading} TRADING symbols"
        print(f"ingest sim: listening on {ws_url} and {http_url} ({source})", file=sys.stderr, flush=True)

    sim = Simulator(cfg)
    asyncio.run(sim.run(ready))
    return 0
