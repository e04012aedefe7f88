"""Delivery-report metrics added once per poll must equal per-record updates."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram

from ingest.kafka.producer import _Observations
from ingest.metrics import LAG_BUCKETS


def samples(registry: CollectorRegistry) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in registry.collect() for s in m.samples
            if not s.name.endswith("_created")}


def test_batched_observations_equal_one_observe_per_record() -> None:
    rng = random.Random(3)
    values = [rng.choice([0.0, 0.005, 0.01, 1e9]) for _ in range(50)] + [rng.uniform(0, 700) for _ in range(500)]
    one, batched = CollectorRegistry(), CollectorRegistry()
    hist_one = Histogram("lag", "x", ["topic"], buckets=LAG_BUCKETS, registry=one).labels("t")
    count_one = Counter("acked", "x", ["topic"], registry=one).labels("t")
    hist_batched = Histogram("lag", "x", ["topic"], buckets=LAG_BUCKETS, registry=batched).labels("t")
    count_batched = Counter("acked", "x", ["topic"], registry=batched).labels("t")
    obs = _Observations(count_batched, hist_batched)
    for i, value in enumerate(values):
        hist_one.observe(value)
        count_one.inc()
        obs.count += 1
        obs.values.append(value)
        if i % 97 == 0:  # several polls
            obs.record()
    obs.record()
    obs.record()  # nothing new: no change
    got, want = samples(batched), samples(one)
    sum_key = next(k for k in want if k[0] == "lag_sum")
    assert abs(got.pop(sum_key) - want.pop(sum_key)) < 1e-6 * max(1.0, abs(sum(values)))
    assert got == want
