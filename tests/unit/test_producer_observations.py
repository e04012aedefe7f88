"""Delivery reports: metrics added once per poll must equal per-record updates, and every record is counted."""

from __future__ import annotations

import asyncio
import random
import time

from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry, Counter, Histogram

from ingest import metrics
from ingest.config import Settings
from ingest.fatal import FatalError
from ingest.kafka.producer import KafkaSink, _Observations
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


class FakeMessage:
    def __init__(self, topic: str, timestamp_ms: int) -> None:
        self._topic, self._ts = topic, timestamp_ms

    def topic(self) -> str:
        return self._topic

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)

    def latency(self) -> float:
        return 0.002


class FakeProducer:
    """Queues produce() calls and answers them on poll(): acks, or an error for the listed timestamps."""

    def __init__(self, conf: dict) -> None:
        self.queued: list = []
        self.fail: set[int] = set()

    def produce(self, topic, value, key, timestamp, on_delivery, headers=None):
        self.queued.append((topic, timestamp, on_delivery))

    def poll(self, timeout):
        served, self.queued = self.queued, []
        for topic, ts, on_delivery in served:
            err = KafkaError(KafkaError._MSG_TIMED_OUT) if ts in self.fail else None
            on_delivery(err, FakeMessage(topic, ts))
        return len(served)


def test_delivery_reports_are_counted_exactly_per_topic_and_reason() -> None:
    sink = KafkaSink(Settings(), producer_factory=FakeProducer)
    producer = sink._producer
    now_ms = int(time.time() * 1000)
    produced = {"lag.a": metrics.RECORDS_PRODUCED.labels("lag.a")._value.get(),
                "lag.b": metrics.RECORDS_PRODUCED.labels("lag.b")._value.get()}
    lag_count = metrics.EVENT_LAG.labels("lag.a")._sum.get()
    timed_out = metrics.RECORDS_DROPPED.labels("delivery_timeout")._value.get()
    producer.fail = {now_ms - 7}
    records = [(b"k", b"v", now_ms - i) for i in range(10)]
    assert asyncio.run(sink.produce_many("lag.a", records)) == 10
    assert asyncio.run(sink.produce("lag.b", b"k", b"v", now_ms - 60_000))
    assert sink.in_flight == 11
    sink.poll()
    assert (sink.in_flight, sink.acked, sink.failed) == (0, 10, 1)
    assert metrics.RECORDS_PRODUCED.labels("lag.a")._value.get() - produced["lag.a"] == 9
    assert metrics.RECORDS_PRODUCED.labels("lag.b")._value.get() - produced["lag.b"] == 1
    assert metrics.RECORDS_DROPPED.labels("delivery_timeout")._value.get() - timed_out == 1
    lag_sum = metrics.EVENT_LAG.labels("lag.a")._sum.get() - lag_count
    assert 9 * 0.0045 <= lag_sum < 9 * 0.0045 + 9 * 1.0  # lags of 0..9 ms (minus the failed one) plus poll time
    b_lag = metrics.EVENT_LAG.labels("lag.b")
    assert sum(b.get() for b in b_lag._buckets) == 1 and 60.0 <= b_lag._sum.get() < 120.0


def test_produce_many_applies_the_buffer_policy_to_what_does_not_fit() -> None:
    class FullAfterTwo(FakeProducer):
        def produce(self, *args, **kwargs):
            if len(self.queued) >= 2:
                raise BufferError
            super().produce(*args, **kwargs)

    sink = KafkaSink(Settings(buffer_policy="drop_newest"), producer_factory=FullAfterTwo)
    dropped = metrics.RECORDS_DROPPED.labels("buffer_full")._value.get()
    assert asyncio.run(sink.produce_many("t", [(b"k", b"v", i) for i in range(5)])) == 2
    assert sink.in_flight == 2
    assert metrics.RECORDS_DROPPED.labels("buffer_full")._value.get() - dropped == 3


def test_records_failed_or_refused_after_a_fatal_error_are_counted_as_kafka_fatal() -> None:
    """After librdkafka's fatal error every record it still holds fails, and produce() refuses the rest: both
    count as ``kafka_fatal`` (before, the purged ones were labelled ``buffer_full``, the refused ones nowhere)."""
    class FatalProducer(FakeProducer):
        def __init__(self, conf: dict) -> None:
            super().__init__(conf)
            self.error_cb = conf["error_cb"]
            self.dead = False

        def produce(self, topic, value, key, timestamp, on_delivery, headers=None):
            if self.dead:
                raise KafkaException(KafkaError(KafkaError._FATAL))
            super().produce(topic, value, key, timestamp, on_delivery, headers)

        def poll(self, timeout):
            if not self.dead:
                return super().poll(timeout)
            served, self.queued = self.queued, []
            for topic, ts, on_delivery in served:
                on_delivery(KafkaError(KafkaError._PURGE_QUEUE), FakeMessage(topic, ts))
            return len(served)

        def flush(self, timeout):
            self.poll(0)
            return 0

        def purge(self, **kwargs):
            pass

        def die(self):
            self.dead = True
            self.error_cb(KafkaError(KafkaError._GAPLESS_GUARANTEE, fatal=True))

    def dropped(reason: str) -> float:
        return metrics.RECORDS_DROPPED.labels(reason)._value.get()

    sink = KafkaSink(Settings(), producer_factory=FatalProducer)
    producer = sink._producer
    before = {reason: dropped(reason) for reason in ("kafka_fatal", "buffer_full")}
    assert asyncio.run(sink.produce_many("fatal.t", [(b"k", b"v", i) for i in range(7)])) == 7
    try:
        producer.die()
    except FatalError as exc:
        assert "_GAPLESS_GUARANTEE" in str(exc)
    else:
        raise AssertionError("the fatal error_cb did not raise")
    assert sink.fatal_error is not None
    try:
        asyncio.run(sink.produce_many("fatal.t", [(b"k", b"v", i) for i in range(3)]))
    except FatalError:
        pass
    else:
        raise AssertionError("produce after the fatal error did not raise FatalError")
    sink.flush(1.0)  # the 7 queued records fail with purge errors
    assert sink.in_flight == 0 and sink.abandon("kafka_fatal") == 0
    assert dropped("kafka_fatal") - before["kafka_fatal"] == 7 + 3
    assert dropped("buffer_full") - before["buffer_full"] == 0
