"""``ingest demo``: the whole connector on one machine, and a live view of what lands in Kafka.

It starts (or reuses) the local stack, the exchange simulator (or points at live Binance with ``--live``),
and the worker as a separate process, exactly as a deployment would run it; then it consumes the ticker
topics, decodes each record through the registry, and redraws a table once a second. Ctrl-C (or
``--duration``) stops everything it started, and only that.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from ingest.devstack.cli import default_state_dir
from ingest.devstack.jars import StackError
from ingest.devstack.stack import LocalStack, free_port

# The real 2021 capture when the shared captures sit beside the clone, else the excerpt the repo carries.
SIM_EXCHANGE_INFO = ("../shared/data/binance-captures/exchangeInfo-2021-10-12.json",
                     "tests/data/exchangeInfo-2021-10-12-excerpt.json")
COUNTERS = ("records_produced_total", "duplicates_suppressed_total", "deadletter_total", "ws_reconnects_total",
            "records_dropped_total")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--live", action="store_true", help="use live Binance instead of the simulator")
    parser.add_argument("--streams", default="!miniTicker@arr", help="streams for the worker")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = Ctrl-C)")
    parser.add_argument("--rows", type=int, default=15, help="rows of the live table")
    parser.add_argument("--exchange-info", default="", help="exchangeInfo JSON for the simulator")
    parser.add_argument("--sim-symbols", type=int, default=200, help="symbols the simulator ticks")
    parser.add_argument("--plain", action="store_true", help="print tables one after another (no redraw)")


def _repo_file(candidates: tuple[str, ...]) -> str:
    root = Path(__file__).resolve().parent.parent
    for rel in candidates:
        path = (root / rel).resolve()
        if path.exists():
            return str(path)
    raise StackError(f"no exchangeInfo file found for the simulator (looked for {', '.join(candidates)})")


def _start_sim(args: argparse.Namespace, log_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    exchange_info = args.exchange_info or _repo_file(SIM_EXCHANGE_INFO)
    cmd = [sys.executable, "-m", "ingest.cli", "sim", "--host", "127.0.0.1", "--port", "0",
           "--exchange-info", exchange_info, "--symbols", str(args.sim_symbols)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=(log_dir / "sim.log").open("w"), text=True)
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
        raise StackError(f"simulator did not print its URLs; see {log_dir / 'sim.log'}")
    return proc, ws_url.rstrip("/"), http_url.rstrip("/")


def main(args: argparse.Namespace) -> int:
    stack = LocalStack(default_state_dir().parent / "demo-stack")
    log_dir = stack.state_dir / "demo-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    owned_stack = not (stack.kafka_running() and stack.registry_running())
    procs: list[subprocess.Popen[str]] = []
    try:
        print("starting local Kafka + Schema Registry ...", file=sys.stderr)
        stack.up()
        if args.live:
            ws_url, rest_url = "wss://stream.binance.com:9443", "https://api.binance.com"
        else:
            print("starting the exchange simulator ...", file=sys.stderr)
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
        print(f"worker started (metrics on http://127.0.0.1:{metrics_port}/metrics, logs in {log_dir})",
              file=sys.stderr)
        _live_view(stack, args, metrics_port, worker)
    except StackError as exc:
        print(f"ingest demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if owned_stack:
            stack.down()
        print("demo stopped; everything it started is stopped", file=sys.stderr)
    return 0


def _scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"binance_ingest_(\w+?)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if match and match.group(1) in COUNTERS:
            totals[match.group(1)] = totals.get(match.group(1), 0.0) + float(match.group(3))
    return totals


def _live_view(stack: LocalStack, args: argparse.Namespace, metrics_port: int,
               worker: subprocess.Popen[str]) -> None:
    from confluent_kafka import Consumer

    from ingest.demo_view import Decoder, render

    decoder = Decoder(stack.registry_url)
    consumer = Consumer({"bootstrap.servers": stack.bootstrap_servers, "group.id": f"demo-view-{os.getpid()}",
                         "auto.offset.reset": "latest", "enable.auto.commit": False})
    topics = ["binance.spot.miniticker", "binance.spot.ticker"]
    latest: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    next_draw = started + 1.0
    received = 0
    try:
        consumer.subscribe(topics)
        while args.duration <= 0 or time.monotonic() - started < args.duration:
            if worker.poll() is not None:
                raise StackError(f"the worker exited with code {worker.returncode}; see its log")
            for msg in consumer.consume(num_messages=5000, timeout=0.2):
                if msg.error() is not None:
                    continue
                record = decoder.decode(msg.value())
                record["_lag_ms"] = msg.timestamp()[1] and (time.time() * 1000 - msg.timestamp()[1])
                latest[record["symbol"]] = record
                received += 1
            if time.monotonic() >= next_draw:
                next_draw += 1.0
                print(render(latest, _scrape(metrics_port), received, args.rows, time.monotonic() - started,
                             clear=not args.plain and sys.stdout.isatty()), flush=True)
    finally:
        consumer.close()
        decoder.close()
