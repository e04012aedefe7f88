"""``ingest demo``: the whole connector on one machine, and a live view of what lands in Kafka.

It starts (or reuses) the local stack, the exchange simulator (or points at live Binance with ``--live``),
and the worker as a separate process, exactly as a deployment would run it; then it consumes the ticker
topics, decodes each record through the registry, and redraws a table once a second.

Ctrl-C, SIGTERM, SIGHUP (a closed terminal) or ``--duration`` stop everything it started, and only that: the
signals become one exception, so a single ``finally`` does the cleanup whichever way the demo ends. The pids
of the simulator and the worker are written to the stack's state directory, so a demo killed with SIGKILL
(where no cleanup can run) is reported by the next one instead of being silently reused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from ingest import config as config_mod
from ingest.config import ConfigError, Settings
from ingest.devstack.cli import default_state_dir
from ingest.devstack.jars import StackError
from ingest.devstack.stack import LocalStack, free_port
from ingest.logs import librdkafka_logger

COUNTERS = ("records_produced_total", "duplicates_suppressed_total", "deadletter_total", "ws_reconnects_total",
            "records_dropped_total")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that end the demo. SIGINT is set here too: a process started in the background by a
non-interactive shell (``ingest demo &`` in a script, CI runners) inherits SIGINT ignored, and Python then
never raises KeyboardInterrupt, so ``kill -INT`` would leave the demo and everything it started running."""
WAIT_NOTE_EVERY_S = 5.0
"""While no record has arrived, say what the demo waits for this often (not a table of zeros)."""


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived: leave through the same cleanup as Ctrl-C."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--live", action="store_true",
                        help="use live Binance instead of the simulator (URLs from INGEST_WS_URL / INGEST_REST_URL "
                             "when set)")
    parser.add_argument("--streams", default="!miniTicker@arr", help="streams for the worker")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = Ctrl-C)")
    parser.add_argument("--rows", type=int, default=15, help="rows of the live table")
    parser.add_argument("--exchange-info", default="",
                        help="exchangeInfo JSON for the simulator (default: the package's real 2021 excerpt)")
    parser.add_argument("--sim-symbols", type=int, default=200,
                        help="symbols the simulator ticks (beyond the excerpt's 250: clones named SIM<n>...)")
    parser.add_argument("--plain", action="store_true", help="print tables one after another (no redraw)")


def _say(text: str) -> None:
    """Print to stderr, never failing: after SIGHUP the terminal may be gone, and cleanup must go on."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


def _check_args(args: argparse.Namespace) -> Settings:
    """Everything a user can get wrong, checked before anything starts (exit 2, one line)."""
    if args.duration < 0:
        raise ConfigError("--duration must be >= 0 (0 = until Ctrl-C)")
    if args.rows < 1:
        raise ConfigError("--rows must be at least 1")
    if args.sim_symbols < 1:
        raise ConfigError("--sim-symbols must be at least 1")
    if args.exchange_info and not Path(args.exchange_info).is_file():
        raise ConfigError(f"--exchange-info: no such file: {args.exchange_info}")
    # The worker's own validation (streams, INGEST_* variables), so a bad --streams fails here, not in its log.
    return config_mod.load(argparse.Namespace(streams=args.streams))


def _check_binance(settings: Settings) -> None:
    """--live: one exchangeInfo request before starting anything, so an unreachable Binance is one line."""
    from ingest.binance.rest import RestClient, RestError

    try:
        asyncio.run(RestClient(settings, max_attempts=2, timeout_s=10.0).exchange_info())
    except (RestError, OSError) as exc:
        raise ConfigError(f"--live: Binance REST {settings.rest_url} unreachable ({exc}); check the network, "
                          "or run the demo without --live (the simulator)") from None


def _start_sim(args: argparse.Namespace, log_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    # --exit-on-stdin-eof: the simulator ends with the demo even when the demo is killed with SIGKILL.
    cmd = [sys.executable, "-m", "ingest.cli", "sim", "--host", "127.0.0.1", "--port", "0",
           "--symbols", str(args.sim_symbols), "--exit-on-stdin-eof"]
    if args.exchange_info:
        cmd += ["--exchange-info", args.exchange_info]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=(log_dir / "sim.log").open("w"), text=True)
    ws_url = http_url = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (ws_url and http_url):
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            break
        for token in line.split():
            if token.startswith("ws://"):
                ws_url = token
            elif token.startswith("http://"):
                http_url = token
    if not (ws_url and http_url):
        proc.kill()
        proc.wait()
        raise StackError(f"simulator did not print its URLs; see {log_dir / 'sim.log'}")
    return proc, ws_url.rstrip("/"), http_url.rstrip("/")


def _pid_file(stack: LocalStack) -> Path:
    return stack.state_dir / "demo-pids.json"


def _leftovers(stack: LocalStack) -> list[int]:
    """Pids of a previous demo's simulator/worker that still run (that demo was killed without cleanup)."""
    try:
        pids = json.loads(_pid_file(stack).read_text())
    except (OSError, ValueError):
        return []
    alive = []
    for pid in pids if isinstance(pids, list) else []:
        try:
            cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"ingest.cli" in cmdline:
            alive.append(int(pid))
    return alive


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def main(args: argparse.Namespace) -> int:
    settings = _check_args(args)
    if args.live:
        _check_binance(settings)
    stack = LocalStack(default_state_dir().parent / "demo-stack")
    log_dir = stack.state_dir / "demo-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    owned_stack = not (stack.kafka_running() or stack.registry_running())
    if not owned_stack:
        _say(f"warning: reusing the demo stack already running in {stack.state_dir} (another demo's, or one left "
             f"by a demo that was killed); it stays up afterwards. Stop it with: "
             f"ingest stack down --state-dir {stack.state_dir}")
    leftovers = _leftovers(stack)
    if leftovers:
        _say(f"warning: processes of an earlier demo still run (pids {' '.join(map(str, leftovers))}) and may "
             f"write to the same topics; stop them with: kill {' '.join(map(str, leftovers))}")
    procs: list[subprocess.Popen[str]] = []
    previous = {sig: signal.signal(sig, _on_signal) for sig in STOP_SIGNALS}
    try:
        _say("starting local Kafka + Schema Registry ...")
        stack.up()
        if args.live:
            ws_url, rest_url = settings.ws_url, settings.rest_url
        else:
            _say("starting the exchange simulator ...")
            sim, ws_url, rest_url = _start_sim(args, log_dir)
            procs.append(sim)
        metrics_port = free_port()
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap_servers,
                   SCHEMA_REGISTRY_URL=stack.registry_url)
        worker = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "run", "--streams", args.streams, "--ws-url", ws_url,
             "--rest-url", rest_url, "--metrics-port", str(metrics_port), "--log-format", "json"],
            env=env, stdout=subprocess.DEVNULL, stderr=(log_dir / "worker.log").open("w"), text=True)
        procs.append(worker)
        _pid_file(stack).write_text(json.dumps([p.pid for p in procs]))
        _say(f"worker started (metrics on http://127.0.0.1:{metrics_port}/metrics, logs in {log_dir})")
        _live_view(stack, settings, args, metrics_port, worker)
    except StackError as exc:
        _say(f"ingest demo: {exc}")
        return 1
    except (KeyboardInterrupt, Stopped):
        pass
    finally:
        # A second signal must not cut the cleanup short (it would orphan what is left).
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        _stop_all(procs, stack if owned_stack else None)
        with contextlib.suppress(OSError):
            _pid_file(stack).unlink()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _say("demo stopped; everything it started is stopped")
    return 0


def _stop_all(procs: list[subprocess.Popen[str]], stack: LocalStack | None) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if stack is not None:
        stack.down()


def _get(port: int, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as resp:
            text: str = resp.read().decode()
            return text
    except OSError as exc:  # 503 from /readyz is an HTTPError (an OSError) that still carries the body
        body = getattr(exc, "read", None)
        return body().decode() if callable(body) else ""


def _scrape(port: int) -> dict[str, float]:
    totals: dict[str, float] = {}
    for line in _get(port, "/metrics").splitlines():
        match = re.match(r"binance_ingest_(\w+?)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if match and match.group(1) in COUNTERS:
            totals[match.group(1)] = totals.get(match.group(1), 0.0) + float(match.group(3))
    return totals


def waiting_note(readyz_body: str, elapsed_s: float) -> str:
    """What the demo waits for before the first record: the worker's own readiness reasons."""
    try:
        reasons = json.loads(readyz_body).get("reasons") or []
    except (ValueError, AttributeError):
        reasons = []
    why = "; ".join(reasons) if reasons else ("worker starting (no answer on /readyz yet)" if not readyz_body
                                              else "worker ready, records on their way")
    return f"waiting for the first records in Kafka ({elapsed_s:.0f}s): {why}"


def _live_view(stack: LocalStack, settings: Settings, args: argparse.Namespace, metrics_port: int,
               worker: subprocess.Popen[str]) -> None:
    from confluent_kafka import Consumer

    from ingest.demo_view import Decoder, render

    decoder = Decoder(stack.registry_url)
    consumer = Consumer({"bootstrap.servers": stack.bootstrap_servers, "group.id": f"demo-view-{os.getpid()}",
                         "auto.offset.reset": "latest", "enable.auto.commit": False,
                         "topic.metadata.refresh.interval.ms": 2000, "logger": librdkafka_logger()})
    topics = [settings.topic("miniticker"), settings.topic("ticker")]
    latest: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    next_draw = started + 1.0
    next_note = started
    received = 0
    try:
        consumer.subscribe(topics)
        while args.duration <= 0 or time.monotonic() - started < args.duration:
            if worker.poll() is not None:
                raise StackError(f"the worker exited with code {worker.returncode}; see its log")
            for msg in consumer.consume(num_messages=5000, timeout=0.2):
                if msg.error() is not None:
                    continue
                value = msg.value()
                if value is None:
                    continue
                record = decoder.decode(value)
                record["_lag_ms"] = msg.timestamp()[1] and (time.time() * 1000 - msg.timestamp()[1])
                latest[record["symbol"]] = record
                received += 1
            now = time.monotonic()
            if not received:
                if now >= next_note:
                    next_note = now + WAIT_NOTE_EVERY_S
                    _say(waiting_note(_get(metrics_port, "/readyz"), now - started))
            elif now >= next_draw:
                next_draw = now + 1.0
                print(render(latest, _scrape(metrics_port), received, args.rows, now - started,
                             clear=not args.plain and sys.stdout.isatty()), flush=True)
    finally:
        consumer.close()
        decoder.close()
