"""What the soak samples every few seconds, and the growth test over the samples.

Process figures come from /proc of each worker (RSS, CPU seconds, open FDs, threads): the worker's own, not
the benchmark's. The rest comes from its /metrics: series count, asyncio tasks, producer queue, per-symbol
state, WebSocket connection objects, reconnects by reason, and the event-lag histogram (quantiles over the
interval between two samples, interpolated as PromQL's ``histogram_quantile``).

The growth test is a least-squares slope per hour over the samples after warm-up, on bin means (samples are
autocorrelated: 5 s apart they are not independent, one-minute means nearly are), with a 95 % confidence
interval from Student's t. A series "grows" when even the lower bound of its slope exceeds its tolerance.
"""

from __future__ import annotations

import math
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.latency import histogram_quantile
from bench.procs import cpu_seconds

M = "binance_ingest_"
LAG = M + "event_lag_seconds_bucket"
# Series watched for growth, and what is still "flat" after warm-up: (growth per hour, share of the series' mean
# per hour, a bounded step over the window), whichever allows most. The step matters in short runs: a reason
# label seen for the first time (a new metric series), one more librdkafka arena or broker connection is a step,
# not growth, but over 4 minutes it extrapolates to a steep slope per hour. RSS moves by whole arenas and
# librdkafka buffers (a broker outage parks its backlog in memory); the counts are exact, so theirs are small.
GROWTH_TOLERANCE: dict[str, tuple[float, float, float]] = {
    "rss_mb": (40.0, 0.25, 50.0),
    "fds": (6.0, 0.10, 8.0),
    "threads": (2.0, 0.05, 4.0),
    "tasks": (6.0, 0.10, 4.0),
    "series": (40.0, 0.05, 60.0),
    "conn_objects": (2.0, 0.0, 4.0),  # closed connections await the cyclic GC: up to ~5 seen alive
    "symbol_state": (0.0, 0.10, 0.0),  # plus the listings' rate: it follows the universe by design
}


def proc_sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd")), "cpu_s": cpu_seconds(pid)}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def parse(text: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            name, _, labels = series.partition("{")
            out.setdefault(name, {})[labels.rstrip("}")] = float(value)
    return out


def label(labels: str, key: str) -> str:
    for part in labels.split('",'):
        k, _, v = part.partition("=")
        if k.strip(",") == key:
            return v.strip('"')
    return ""


def metric_sample(text: str) -> dict[str, Any]:
    m = parse(text)

    def one(name: str) -> float:
        return sum(m.get(M + name, {}).values())

    lag: dict[float, float] = {}
    for labels, value in m.get(LAG, {}).items():
        le = label(labels, "le")
        bound = math.inf if le == "+Inf" else float(le)
        lag[bound] = lag.get(bound, 0.0) + value
    reconnects = {label(lbl, "reason"): v for lbl, v in m.get(M + "ws_reconnects_total", {}).items()}
    return {"series": sum(len(v) for v in m.values()), "tasks": one("asyncio_tasks"),
            "queue": one("producer_queue_messages"), "symbol_state": one("symbol_state_entries"),
            "conn_objects": one("ws_connection_objects"), "ws_connected": one("ws_connected"),
            "ready": one("ready"), "accepted": one("records_accepted_total"), "lag_buckets": lag,
            "reconnects": reconnects}


def lag_quantiles(before: dict[float, float], after: dict[float, float]) -> tuple[float, float]:
    """p50 and p99 (seconds) of the event lag observed between two scrapes; NaN when nothing was acked."""
    window = {le: after[le] - before.get(le, 0.0) for le in after}
    return histogram_quantile(0.5, window), histogram_quantile(0.99, window)


@dataclass
class Slope:
    name: str
    per_hour: float
    low: float
    high: float
    mean: float
    tolerance: float
    points: int

    @property
    def grows(self) -> bool:
        return self.points >= 3 and self.low > self.tolerance

    def line(self) -> str:
        verdict = "GROWS" if self.grows else "flat"
        return (f"{self.name}: {self.per_hour:+.2f}/h (95% CI {self.low:+.2f} .. {self.high:+.2f}), mean "
                f"{self.mean:.1f}, tolerance {self.tolerance:.1f}/h, {self.points} bins: {verdict}")


T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 12: 2.18,
       15: 2.13, 20: 2.09, 25: 2.06, 30: 2.04, 40: 2.02, 60: 2.00, 120: 1.98}


def t95(df: int) -> float:
    """Two-sided 95 % Student t quantile (table, rounded down to the nearest tabulated df: conservative)."""
    return T95[max(k for k in T95 if k <= max(df, 1))]


def slope(name: str, times_s: list[float], values: list[float], warmup_s: float, bins: int = 30,
          expected_per_hour: float = 0.0) -> Slope:
    """Least-squares slope per hour of ``values`` after ``warmup_s``, fitted on ``bins`` bin means;
    ``expected_per_hour``: growth that is by design (per-symbol state follows listings)."""
    pts = [(t, v) for t, v in zip(times_s, values, strict=True) if t >= warmup_s and not math.isnan(v)]
    floor, share, step = GROWTH_TOLERANCE.get(name, (0.0, 0.0, 0.0))
    if len(pts) < 3:
        return Slope(name, math.nan, math.nan, math.nan, math.nan, floor, 0)
    t0, t1 = pts[0][0], pts[-1][0]
    width = max((t1 - t0) / bins, 1e-9)
    grouped: dict[int, list[tuple[float, float]]] = {}
    for t, v in pts:
        grouped.setdefault(min(int((t - t0) / width), bins - 1), []).append((t, v))
    xs = [sum(t for t, _ in g) / len(g) / 3600.0 for g in grouped.values()]
    ys = [sum(v for _, v in g) / len(g) for g in grouped.values()]
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    resid = [y - mean_y - b * (x - mean_x) for x, y in zip(xs, ys, strict=True)]
    se = math.sqrt(sum(r * r for r in resid) / (n - 2) / sxx) if n > 2 and sxx else math.inf
    half = t95(n - 2) * se
    tolerance = max(floor, share * abs(mean_y), step * 3600.0 / max(t1 - t0, 1.0)) + expected_per_hour
    return Slope(name, b, b - half, b + half, mean_y, tolerance, n)
