"""The ratio table, docs/performance.md and docs/performance.png, all from one run's numbers.

The prose around the numbers (what the profiler showed, what was changed) is fixed text written by us; every
number in the tables and the plot comes from the ``Run`` passed in, so the document is never half old.
"""

from __future__ import annotations

import importlib.metadata as md
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from bench.end_to_end import Throughput
from bench.end_to_end import table as e2e_table
from bench.hot_path import HotPathResult
from bench.hot_path import table as hot_table
from bench.latency import Latency
from bench.latency import table as lag_table
from bench.peers import Peer


@dataclass
class Run:
    hot: HotPathResult
    e2e: list[Throughput]
    lag: Latency
    peers: list[Peer]
    sim_flags: str
    command: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    seconds: float
    quick: bool


def _goal(ok: bool) -> str:
    return "met" if ok else "MISSED"


def ratios(run: Run) -> list[tuple[str, str, str, str]]:
    """(measure, value, goal, met?) rows."""
    worker, naive = run.e2e[0], run.e2e[1]
    hot_ratio = run.hot.pipeline_rps / run.hot.raw_rps
    e2e_ratio = worker.records_per_s / max(naive.records_per_s, 1e-9)
    cpu_ratio = naive.cpu_s_per_million / max(worker.cpu_s_per_million, 1e-9)
    lag = run.lag
    worst_p99 = max(lag.worker_p99_ms, lag.consumer_p99_ms)
    return [
        ("hot path / raw producer limit (records/s, one core)", f"{hot_ratio:.2f}", ">= 0.50", _goal(hot_ratio >= 0.5)),
        ("end to end: worker / naive pipeline (records/s acknowledged)", f"{e2e_ratio:.2f}", ">= 5",
         _goal(e2e_ratio >= 5)),
        ("end to end: naive / worker CPU seconds per million records", f"{cpu_ratio:.2f}", "(capacity ratio)", ""),
        ("end to end: worker records/s sustained", f"{worker.records_per_s:,.0f}", ">= 100,000",
         _goal(worker.records_per_s >= 100_000)),
        ("peers run on the same stream", f"{sum(p.ran for p in run.peers)} of {len(run.peers)}", "worker ahead",
         "not measurable"),
        ("nominal load: event->ack p99, worker histogram (ms)", f"{lag.worker_p99_ms:.0f}", "< 50",
         _goal(lag.worker_p99_ms < 50)),
        ("nominal load: event->fetched p99, consumer (ms)", f"{lag.consumer_p99_ms:.0f}", "< 50",
         _goal(worst_p99 < 50)),
        ("nominal load: frame read->fetched p99, consumer (ms): the share after the simulator's",
         f"{lag.read_p99_ms:.0f}", "(information)", ""),
        ("nominal load: worker CPU (% of one core)", f"{lag.cpu_percent:.1f}", "< 5", _goal(lag.cpu_percent < 5)),
        ("nominal load: worker peak RSS (MB)", f"{lag.peak_rss_mb:.0f}", "< 150", _goal(lag.peak_rss_mb < 150)),
    ]


BEFORE = {  # docs/performance.md at the start of issue 14 (the full run of commit b0f1817's doc: two paths,
    # exec-generated writers), same command on the same machine
    "hot path on_frame+ack (records/s)": 154_923, "raw producer limit (records/s)": 666_553,
    "hot path / raw producer limit": 0.23, "hot path main-thread CPU (µs/record)": 5.97,
    "end to end: worker (records/s)": 95_723, "end to end: naive (records/s)": 46_252,
    "end to end: worker / naive": 2.07, "end to end: worker CPU s per million records": 9.61,
    "nominal load: consumer event->fetched p50 / p99 (ms)": "37 / 93",
    "nominal load: of which event->frame read (simulator) p50 / p99 (ms)": "3 / 4",
    "nominal load: of which frame read->fetched (worker, broker, fetch) p50 / p99 (ms)": "34 / 89",
    "nominal load: worker histogram p50 / p99 (ms)": "42 / 97",
    "nominal load: worker CPU (% of one core)": 4.20,
    "nominal load: worker peak RSS (MB)": 96.4,
}


def before_after(run: Run) -> str:
    """Markdown rows: the previous full run's figures next to this run's."""
    worker, naive = run.e2e[0], run.e2e[1]
    lag = run.lag
    now = {
        "hot path on_frame+ack (records/s)": run.hot.pipeline_rps, "raw producer limit (records/s)": run.hot.raw_rps,
        "hot path / raw producer limit": run.hot.pipeline_rps / run.hot.raw_rps,
        "hot path main-thread CPU (µs/record)": run.hot.pipeline_cpu_us,
        "end to end: worker (records/s)": worker.records_per_s, "end to end: naive (records/s)": naive.records_per_s,
        "end to end: worker / naive": worker.records_per_s / max(naive.records_per_s, 1e-9),
        "end to end: worker CPU s per million records": worker.cpu_s_per_million,
        "nominal load: consumer event->fetched p50 / p99 (ms)":
            f"{lag.consumer_p50_ms:.0f} / {lag.consumer_p99_ms:.0f}",
        "nominal load: of which event->frame read (simulator) p50 / p99 (ms)":
            f"{lag.arrival_p50_ms:.0f} / {lag.arrival_p99_ms:.0f}",
        "nominal load: of which frame read->fetched (worker, broker, fetch) p50 / p99 (ms)":
            f"{lag.read_p50_ms:.0f} / {lag.read_p99_ms:.0f}",
        "nominal load: worker histogram p50 / p99 (ms)": f"{lag.worker_p50_ms:.0f} / {lag.worker_p99_ms:.0f}",
        "nominal load: worker CPU (% of one core)": lag.cpu_percent,
        "nominal load: worker peak RSS (MB)": lag.peak_rss_mb,
    }

    def fmt(value: object) -> str:
        if isinstance(value, str):
            return value
        assert isinstance(value, int | float)
        return f"{value:,.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return "\n".join(f"| {name} | {fmt(BEFORE[name])} | {fmt(now[name])} |" for name in BEFORE)


def ratio_table(run: Run) -> str:
    rows = ratios(run)
    width = max(len(r[0]) for r in rows)
    lines = [f"{'measure':<{width}} {'value':>10} {'goal':>16} "]
    lines += [f"{m:<{width}} {v:>10} {g:>16} {ok}" for m, v, g, ok in rows]
    return "\n".join(lines)


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    import confluent_kafka

    from ingest.devstack.jars import APICURIO_VERSION, KAFKA_VERSION
    versions = ", ".join(f"{name} {md.version(name)}" for name in ("msgspec", "fastavro", "orjson", "websockets",
                                                                   "prometheus-client"))
    return [f"- machine: {cpu}, {os.cpu_count()} cores, {mem_kb / 1024 / 1024:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}",
            f"- Python {platform.python_version()}; confluent-kafka {md.version('confluent-kafka')} "
            f"(librdkafka {confluent_kafka.libversion()[0]}); {versions}",
            f"- broker on the same machine: Apache Kafka {KAFKA_VERSION} (KRaft, one node) and Apicurio Registry "
            f"{APICURIO_VERSION} from `ingest stack`; the simulator (`ingest sim`) also runs on it"]


def plot(run: Run, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = ["hot path\n(in process)", "raw producer\nlimit"] + [r.name.replace(" (", "\n(") for r in run.e2e]
    values = [run.hot.pipeline_rps, run.hot.raw_rps] + [r.records_per_s for r in run.e2e]
    colors = ["tab:blue", "tab:gray", "tab:blue", "tab:orange"]
    bars = left.bar(names, values, color=colors)
    left.bar_label(bars, labels=[f"{v / 1000:,.0f}k" for v in values])
    left.set_ylabel("records/s")
    left.set_title("Throughput (one run, same machine)")
    left.axhline(100_000, color="tab:red", linestyle="--", linewidth=1, label="goal: 100k/s end to end")
    left.legend(loc="upper right")
    lags = sorted(run.lag.consumer_lags_ms)
    if lags:
        right.plot(lags, [i / len(lags) for i in range(len(lags))], label="consumer: event -> fetched")
    for q, value, style in ((0.5, run.lag.worker_p50_ms, ":"), (0.99, run.lag.worker_p99_ms, "--")):
        if not math.isnan(value):
            right.axvline(value, color="tab:green", linestyle=style, label=f"worker histogram p{int(q * 100)}")
    right.axvline(50, color="tab:red", linestyle="--", linewidth=1, label="goal: p99 < 50 ms")
    right.set_xlabel("event -> Kafka lag (ms)")
    right.set_ylabel("fraction of records")
    right.set_title(f"Lag at nominal load ({run.lag.records_per_s:,.0f} tickers/s, 1 s arrays)")
    right.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(run: Run, md_path: Path, png_path: Path) -> None:
    plot(run, png_path)
    md_path.write_text(document(run), encoding="utf-8")


def document(run: Run) -> str:
    rows = "\n".join(f"| {m} | {v} | {g} | {ok} |" for m, v, g, ok in ratios(run))
    peers = "\n".join(f"- **{p.name}**: {'ran' if p.ran else 'not run'}: {p.reason}" for p in run.peers)
    lb, la = run.load_before, run.load_after
    lags = run.lag.consumer_lags_ms
    return TEMPLATE.format(command=run.command, machine="\n".join(machine()), seconds=run.seconds,
                           load_before=f"{lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}",
                           load_after=f"{la[0]:.2f} {la[1]:.2f} {la[2]:.2f}", ratio_rows=rows,
                           hot=hot_table(run.hot), e2e=e2e_table(run.e2e), lag=lag_table(run.lag),
                           sim_flags=run.sim_flags, peers=peers, before_after=before_after(run),
                           arrival_p50=run.lag.arrival_p50_ms, arrival_p99=run.lag.arrival_p99_ms,
                           read_p50=run.lag.read_p50_ms, read_p99=run.lag.read_p99_ms,
                           under_goal=100 * sum(x < 50 for x in lags) / max(len(lags), 1),
                           hot_low=min(run.hot.spread.get("on_frame+ack records/s", [run.hot.pipeline_rps])),
                           hot_high=run.hot.pipeline_rps, raw_rps=run.hot.raw_rps,
                           cpu_us=run.hot.pipeline_cpu_us,
                           cpu_ratio=run.e2e[1].cpu_s_per_million / max(run.e2e[0].cpu_s_per_million, 1e-9),
                           hot_ratio=run.hot.pipeline_rps / run.hot.raw_rps,
                           worker_cpu=run.e2e[0].cpu_s_per_million, naive_cpu=run.e2e[1].cpu_s_per_million,
                           quick=" (QUICK MODE: sizes too small to mean anything)" if run.quick else "")


TEMPLATE = (Path(__file__).with_name("performance_template.md")).read_text(encoding="utf-8")
