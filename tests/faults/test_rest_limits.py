"""Binance REST limits against the simulator's real HTTP server (issue item 6).

The simulator counts request weight per client address and per wall-clock minute exactly like Binance
(``X-MBX-USED-WEIGHT-1M`` on every answer, 429 with ``Retry-After`` over the limit, 418 for clients that keep
calling), and injects 429/418 answers on demand. The worker's side is read from its metrics:
``binance_ingest_rest_requests_total{endpoint,status}`` and ``binance_ingest_rest_weight_used``; the
simulator's side from ``/_sim/stats`` (requests by path, answers by status), sampled 20 times a second.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path

import pytest

from tests.faults import accounting
from tests.sim_fixture import EXCHANGE_INFO_EXCERPT
from tests.worker_fixture import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.faults]

EXCHANGE_INFO = "/api/v3/exchangeInfo"
TICKER_24HR = "/api/v3/ticker/24hr"


class StatsSampler:
    """Samples the simulator's counters in the background: (wall time, stats) pairs."""

    def __init__(self, sim, interval_s: float = 0.05) -> None:
        self.sim = sim
        self.samples: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self.sim.stats()))
            except OSError:
                return
            time.sleep(interval_s)

    def stop(self) -> None:
        """Stop sampling, then take one last sample, so whatever the test saw before stopping is in the samples
        (the background thread may not have sampled since)."""
        self._stop.set()
        self._thread.join(5)
        self.samples.append((time.time(), self.sim.stats()))

    def first_time(self, predicate) -> float:
        for t, s in self.samples:
            if predicate(s):
                return t
        raise AssertionError("the simulator's counters never showed the expected request")

    def gap(self, first, then) -> tuple[float, float]:
        """Bounds (low, high) of the seconds between the request that made ``first`` true and the one that made
        ``then`` true. Each happened between the sample showing it and the sample before; a stalled sampler
        widens the bounds but never makes them wrong."""
        t_first = self.first_time(first)
        t_then = self.first_time(then)
        before_first = max(ts for ts, _ in self.samples if ts < t_first)
        before_then = max(ts for ts, _ in self.samples if ts < t_then)
        return before_then - t_first, t_then - before_first

    def before(self, t: float) -> dict:
        """The last stats sampled before ``t``."""
        return [s for ts, s in self.samples if ts < t][-1]


def requests(stats: dict, path: str) -> int:
    return stats["rest_requests"].get(path, 0)


def total_requests(stats: dict) -> int:
    return sum(n for path, n in stats["rest_requests"].items() if path.startswith("/"))


def status_count(stats: dict, status: int) -> int:
    return stats["rest_status"].get(str(status), 0)


def start_worker(sim, prefix: str, log_dir: Path, bootstrap: str, registry: str, *args: str) -> WorkerProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap, SCHEMA_REGISTRY_URL=registry)
    return WorkerProcess(["--ws-url", sim.ws_url, "--rest-url", sim.http_url, "--topic-prefix", prefix,
                          "--backoff-initial-s", "0.2", "--backoff-max-s", "1", *args], env,
                         log_dir / f"worker-{time.monotonic_ns()}.log")


def test_429_and_418_retry_after_is_honoured(sim_factory, stack_endpoints, tmp_path, unique_prefix):
    """exchangeInfo at start answered 429 (Retry-After 3) and the snapshot after a reconnect answered 418
    (Retry-After 4): the worker sends nothing at all until each Retry-After has passed, then succeeds, and
    counts every answer under its endpoint and status. Catches: Retry-After ignored (retrying on the 5xx backoff
    of 0.2-1 s would send within the window), 418 treated as fatal, statuses not counted."""
    sim = sim_factory(symbols=6, interval=0.25, seed=41)
    sampler = StatsSampler(sim)
    sim.fault("rest", status=429, count=1, retry_after=3)
    worker = start_worker(sim, unique_prefix, tmp_path, stack_endpoints.bootstrap_servers,
                          stack_endpoints.registry_url, "--streams", "!miniTicker@arr")
    worker.wait_ready(60)
    time.sleep(0.5)
    sim.fault("rest", status=418, count=1, retry_after=4)
    sim.fault("close", code=1011)  # the reconnect asks for a ticker/24hr snapshot, which gets the 418
    worker.wait_for(lambda: worker.metric("binance_ingest_rest_requests_total", endpoint=TICKER_24HR,
                                          status="200") >= 2, 20, "the snapshot after the 418")
    time.sleep(0.5)
    sampler.stop()

    gap_429 = sampler.gap(lambda s: status_count(s, 429) >= 1, lambda s: requests(s, EXCHANGE_INFO) >= 2)
    t418 = sampler.first_time(lambda s: status_count(s, 418) >= 1)
    n418 = total_requests(sampler.before(t418)) + 1  # the 418 was request number n418
    gap_418 = sampler.gap(lambda s: status_count(s, 418) >= 1, lambda s: total_requests(s) > n418)
    # A request sent within the Retry-After window would make even the upper bound of the gap short.
    assert gap_429[1] >= 3 - 0.1, f"request {gap_429} s after a 429 with Retry-After 3"
    assert gap_418[1] >= 4 - 0.1, f"request {gap_418} s after a 418 with Retry-After 4"

    m = worker.metric
    assert m("binance_ingest_rest_requests_total", endpoint=EXCHANGE_INFO, status="429") == 1
    assert m("binance_ingest_rest_requests_total", endpoint=EXCHANGE_INFO, status="200") >= 1
    assert m("binance_ingest_rest_requests_total", endpoint=TICKER_24HR, status="418") == 1
    log = [e for e in worker.log_events() if e.get("status") in (418, 429)]
    assert [e["level"] for e in log] == ["WARNING", "ERROR"], log
    assert [e["retry_after_s"] for e in log] == [3.0, 4.0]

    # what each successful snapshot returned: every TRADING symbol (the worker asks with symbolStatus=TRADING)
    entries = len(sim.request(TICKER_24HR, {"symbolStatus": "TRADING"})[2])
    final, _ = accounting.quiesce(sim, worker)
    snapshot_entries = int(final.get("rest_requests_total", endpoint=TICKER_24HR, status="200")) * entries
    assert worker.stop() == 0
    figures = accounting.check(sim, final, stack_endpoints.bootstrap_servers, stack_endpoints.registry_url,
                               unique_prefix, snapshot_entries=snapshot_entries)
    print(f"429 -> next request {gap_429[0]:.2f}-{gap_429[1]:.2f}s later (Retry-After 3); 418 -> next request "
          f"{gap_418[0]:.2f}-{gap_418[1]:.2f}s later (Retry-After 4); rest status counts at the simulator "
          f"{sim_final_statuses(sampler)}; " + figures.line())


def sim_final_statuses(sampler: StatsSampler) -> dict:
    return sampler.samples[-1][1]["rest_status"]


LIMIT = 100  # request weight per minute, advertised in exchangeInfo and enforced by the simulator


def exchange_info_with_limit(path: Path, limit: int) -> Path:
    info = json.loads(EXCHANGE_INFO_EXCERPT.read_text())
    for rule in info["rateLimits"]:
        if rule["rateLimitType"] == "REQUEST_WEIGHT":
            rule["limit"] = limit
    path.write_text(json.dumps(info))
    return path


def wait_for_second_in_minute(low: float, high: float) -> None:
    """Sleep until the wall clock is between ``low`` and ``high`` seconds into a minute (Binance's windows)."""
    while not low <= time.time() % 60 <= high:
        time.sleep(0.2)


def test_weight_budget_follows_the_server_header_and_never_goes_over(sim_factory, stack_endpoints, tmp_path,
                                                                     unique_prefix):
    """exchangeInfo advertises 100 weight/minute, which the simulator enforces per address. Another client on the
    same address (this test) spends weight until the server's count is 98; the worker's next request (a snapshot
    of 3 symbols after a forced reconnect, weight 2) reads ``X-MBX-USED-WEIGHT-1M: 100`` and the one after that
    waits for the next minute instead of being sent. Over the whole run the simulator answers no 429/418 and the
    worker's ``rest_weight_used`` never exceeds the limit. Catches: the header not tracked (the worker's own estimate is
    about 24, so it would send and get a 429), the budget not enforced (same), the limit from exchangeInfo
    ignored (the default of 6000 would let it send)."""
    info = exchange_info_with_limit(tmp_path / "exchangeInfo-limit.json", LIMIT)
    sim = sim_factory(exchange_info=info, interval=0.25, seed=42, rest_weight_limit=LIMIT)
    sampler = StatsSampler(sim)
    _, _, body = sim.request(EXCHANGE_INFO)  # weight 20, in whatever minute this is
    symbols = [s["symbol"] for s in body["symbols"] if s["status"] == "TRADING"][:3]
    streams = ",".join(f"{s.lower()}@miniTicker" for s in symbols)
    worker = start_worker(sim, unique_prefix, tmp_path, stack_endpoints.bootstrap_servers,
                          stack_endpoints.registry_url, "--streams", streams)
    worker.wait_ready(60)
    assert worker.metric("binance_ingest_rest_weight_limit") == LIMIT

    wait_for_second_in_minute(30, 50)  # >= 10 s left for the sequence below; <= 30 s to wait for the next minute
    minute = math.floor(time.time() / 60)
    used = 0
    while used < LIMIT - 2:  # /api/v3/ping costs 1: fill the server's count to 98 (a 3-symbol snapshot costs 2)
        status, headers, _ = sim.request("/api/v3/ping")
        assert status == 200
        used = int(headers["X-MBX-USED-WEIGHT-1M"])
    weight_seen = []

    snapshots = worker.metric("binance_ingest_rest_requests_total", endpoint=TICKER_24HR, status="200")
    sim.fault("close", code=1011)
    worker.wait_for(lambda: worker.metric("binance_ingest_rest_requests_total", endpoint=TICKER_24HR,
                                          status="200") > snapshots, 10, "the snapshot after reconnect 1")
    weight_seen.append(worker.metric("binance_ingest_rest_weight_used"))
    assert weight_seen[-1] == LIMIT, "the worker did not adopt the server's X-MBX-USED-WEIGHT-1M"

    calls_before = requests(sim.stats(), TICKER_24HR)
    sim.fault("close", code=1011)
    worker.wait_for(lambda: any(e.get("event", "").endswith("(weight budget spent)")
                                for e in worker.log_events()), 10, "the worker waiting for the next minute")
    assert math.floor(time.time() / 60) == minute, "the sequence did not fit into one minute"
    worker.wait_for(lambda: requests(sim.stats(), TICKER_24HR) > calls_before, 75, "the deferred snapshot")
    sampler.stop()
    sent_at = sampler.first_time(lambda s: requests(s, TICKER_24HR) > calls_before)
    assert math.floor(sent_at / 60) == minute + 1, "the deferred snapshot was not sent in the next minute"
    weight_seen.append(worker.metric("binance_ingest_rest_weight_used"))

    statuses = sim_final_statuses(sampler)
    assert statuses.get("429", 0) == 0 and statuses.get("418", 0) == 0, statuses
    assert max(weight_seen) <= LIMIT
    final, _ = accounting.quiesce(sim, worker)
    by_status = {s: final.get("rest_requests_total", status=s) for s in ("200", "429", "418")}
    # Each successful snapshot returned one entry per symbol of the worker's streams.
    snapshot_entries = int(final.get("rest_requests_total", endpoint=TICKER_24HR, status="200")) * len(symbols)
    assert worker.stop() == 0
    figures = accounting.check(sim, final, stack_endpoints.bootstrap_servers, stack_endpoints.registry_url,
                               unique_prefix, snapshot_entries=snapshot_entries)
    print(f"limit {LIMIT}/min; server count filled to {used}; worker weight_used after reconnect 1 = "
          f"{weight_seen[0]:g}, in the next minute {weight_seen[1]:g}; deferred snapshot sent "
          f"{sent_at % 60:.1f}s into the next minute; worker requests by status {by_status}; simulator answers "
          f"{statuses}; " + figures.line())
