"""CI: every benchmark still runs end to end and prints its tables (quick sizes). Never asserts on time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.end_to_end import Throughput
from bench.hot_path import STAGES, HotPathResult
from bench.latency import Latency, histogram_quantile
from bench.peers import Peer
from bench.report import Run, document, plot

REPO = Path(__file__).resolve().parents[2]
TABLE_HEADINGS = ["Hot path, one core", "on_frame+ack", "raw producer", "end to end", "worker (this project)",
                  "naive pipeline", "Latency at nominal load", "worker histogram (event->ack)",
                  "consumer (event->fetched)", "== peers", "Redpanda Connect", "cryptofeed", "== ratios",
                  "hot path / raw producer limit"]


@pytest.mark.integration
@pytest.mark.slow
def test_benchmarks_run_in_quick_mode_and_print_their_tables(stack_endpoints) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    out = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--no-write", "--bootstrap", stack_endpoints.bootstrap_servers,
         "--registry", stack_endpoints.registry_url],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for heading in TABLE_HEADINGS:
        assert heading in out.stdout, f"missing {heading!r} in:\n{out.stdout}"


def test_report_renders_document_and_plot_from_the_numbers_it_is_given(tmp_path: Path) -> None:
    hot = HotPathResult(records=4000, frames=2, stage_us=dict.fromkeys(STAGES, 1.5), pipeline_rps=61_234,
                        pipeline_cpu_us=9.0, raw_rps=400_000, bytes_per_record=199)
    e2e = [Throughput("worker (this project)", 48_765, 100_000, 15.0, 70, 90),
           Throughput("naive pipeline", 40_000, 100_000, 16.0, 70, 66)]
    lag = Latency(3000, 80, 240, 250, 90, 140, 150, [50.0, 90.0, 140.0], 20, 40, 6.0, 99)
    run = Run(hot, e2e, lag, [Peer("some peer", False, "because of a reason")], "--symbols 1",
              "python -m bench.run", (1, 1, 1), (2, 2, 2), 10, False)
    text = document(run)
    assert "61,234" in text and "48,765" in text and "because of a reason" in text
    assert "| end to end: worker / naive pipeline (records/s acknowledged) | 1.22 | >= 5 | MISSED |" in text
    plot(run, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_histogram_quantile_interpolates_inside_buckets_like_promql() -> None:
    buckets = {0.05: 0.0, 0.1: 50.0, 0.25: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.175)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.075)
