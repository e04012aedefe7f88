"""End to end through real sockets: simulator -> (worker | naive pipeline) -> local Kafka, acknowledged.

Why measured from outside: records/s is Kafka's own count (high watermarks of the topics), CPU and peak
RSS come from /proc of the child, so the worker and the naive pipeline are measured the same way and
neither reports on itself. Each contender gets a fresh simulator with the same flags and its own topics.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Child, Sim, Worker, acked_records, cpu_seconds, peak_rss_mb
from ingest.config import Settings
from ingest.kafka.topics import admin_client, ensure_topics

STREAMS = "!miniTicker@arr,!ticker@arr"


@dataclass
class Throughput:
    name: str
    records_per_s: float
    offered_per_s: float  # tickers the simulator generated per second, per stream kind summed
    cpu_s_per_million: float
    cpu_percent: float  # of one core
    peak_rss_mb: float
    note: str = ""


def _topics(prefix: str) -> list[str]:
    return [f"{prefix}.miniticker", f"{prefix}.ticker"]


def measure(child: Child, sim: Sim, bootstrap: str, prefix: str, warmup_s: float, window_s: float,
            name: str) -> Throughput:
    time.sleep(warmup_s)
    topics = _topics(prefix)
    sent0, acked0, cpu0, t0 = sim.stats().get("generated_tickers", 0), acked_records(bootstrap, topics), \
        cpu_seconds(child.proc.pid), time.monotonic()
    time.sleep(window_s)
    sent1, acked1, cpu1, t1 = sim.stats().get("generated_tickers", 0), acked_records(bootstrap, topics), \
        cpu_seconds(child.proc.pid), time.monotonic()
    elapsed = t1 - t0
    acked = acked1 - acked0
    note = "" if child.alive() else f"exited: {child.tail(3)}"
    return Throughput(name, acked / elapsed, 2 * (sent1 - sent0) / elapsed,  # each tick goes to both streams
                      (cpu1 - cpu0) / max(acked, 1) * 1e6, 100 * (cpu1 - cpu0) / elapsed,
                      peak_rss_mb(child.proc.pid), note)


def run_worker(log_dir: Path, bootstrap: str, registry: str, sim_flags: list[str], warmup_s: float,
               window_s: float) -> Throughput:
    sim = Sim(log_dir, *sim_flags)
    prefix = f"bench.e2e.{uuid.uuid4().hex[:6]}"
    worker = Worker(log_dir, sim, bootstrap, registry, prefix, STREAMS)
    try:
        worker.wait_ready()
        return measure(worker, sim, bootstrap, prefix, warmup_s, window_s, "worker (this project)")
    finally:
        worker.stop()
        sim.stop()


def run_naive(log_dir: Path, bootstrap: str, registry: str, sim_flags: list[str], warmup_s: float,
              window_s: float) -> Throughput:
    sim = Sim(log_dir, *sim_flags)
    prefix = f"bench.naive.{uuid.uuid4().hex[:6]}"
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    ensure_topics(admin_client(settings), settings)  # same partitions as the worker's topics
    naive = Child("naive", [sys.executable, "-m", "bench.naive", sim.ws_url, bootstrap, registry, prefix], log_dir)
    try:
        return measure(naive, sim, bootstrap, prefix, warmup_s, window_s, "naive pipeline")
    finally:
        naive.stop()
        sim.stop()


def table(rows: list[Throughput]) -> str:
    lines = [f"{'end to end':<24} {'records/s':>10} {'offered/s':>10} {'CPU s/M rec':>11} {'CPU %core':>9} "
             f"{'peak RSS MB':>11}"]
    for r in rows:
        lines.append(f"{r.name:<24} {r.records_per_s:>10,.0f} {r.offered_per_s:>10,.0f} {r.cpu_s_per_million:>11.1f} "
                     f"{r.cpu_percent:>9.0f} {r.peak_rss_mb:>11.0f} {r.note}")
    return "\n".join(lines)
