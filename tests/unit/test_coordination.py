"""Shard mapping and the coordinator's ordering guarantees, without Kafka (the group itself is exercised by
tests/scaleout against a real broker)."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from ingest import coordination
from ingest.config import ConfigError, Settings, validate
from ingest.coordination import ShardCoordinator, consumer_config, owned_streams, shard_of


def test_shard_mapping_is_pinned_across_releases() -> None:
    """Replicas of different versions meet during a rolling upgrade: the mapping must never change, so it is
    pinned here (CRC-32 of the symbol or array name; Python's salted hash() would differ per process)."""
    assert [shard_of(s, 12) for s in ("!miniTicker@arr", "!ticker@arr", "btcusdt@ticker", "bnbbtc@ticker")] == \
        [8, 9, 3, 10]


def test_a_symbols_streams_share_a_shard_whatever_the_spelling() -> None:
    assert shard_of("btcusdt@ticker", 12) == shard_of("btcusdt@miniTicker", 12) == shard_of("BTCUSDT@ticker", 12)


def test_owned_streams_split_the_work_without_overlap_or_loss() -> None:
    streams = [f"sym{i}usdt@ticker" for i in range(500)] + ["!ticker@arr", "!miniTicker@arr"]
    parts = [owned_streams(streams, {shard}, 12) for shard in range(12)]
    assert sorted(s for part in parts for s in part) == sorted(streams)
    assert sum(len(p) for p in parts) == len(streams)
    assert min(len(p) for p in parts) > 20, "a stable hash spreads symbols over the shards"
    assert owned_streams(streams, {0, 1}, 12) == [s for s in streams if s in parts[0] or s in parts[1]]


def test_consumer_config_is_membership_only_and_cooperative() -> None:
    settings = Settings(topic_prefix="x", coordination="kafka", coordination_session_timeout_s=7.5)
    conf = consumer_config(settings, {"bootstrap.servers": "b:9092", "security.protocol": "SASL_SSL"})
    assert conf["group.id"] == "x.coordination"
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    assert conf["session.timeout.ms"] == 7500
    assert conf["heartbeat.interval.ms"] < conf["session.timeout.ms"] / 3
    assert conf["enable.auto.commit"] is False
    assert conf["security.protocol"] == "SASL_SSL"


@pytest.mark.parametrize(("changes", "message"), [
    ({"coordination": "kafka", "combined": False}, "needs combined streams"),
    ({"coordination": "kafka", "coordination_session_timeout_s": 3.0}, "between 6 and 300"),
    ({"coordination": "kafka", "coordination_shards": 0}, "at least 1"),
])
def test_contradictory_coordination_settings_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(Settings(**changes))


class _FakeConsumer:
    """Stands in for confluent_kafka.Consumer: keeps the rebalance callbacks so the test can fire them."""

    instances: list[_FakeConsumer] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.callbacks: dict[str, Any] = {}
        self.subscribed = threading.Event()
        self.closed = threading.Event()
        _FakeConsumer.instances.append(self)

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks
        self.subscribed.set()

    def poll(self, timeout: float) -> None:
        time.sleep(timeout)

    def close(self) -> None:
        self.callbacks["on_revoke"](self, [SimpleNamespace(partition=p) for p in (1, 2)])  # what is still owned
        self.closed.set()


def test_a_revoke_returns_only_after_the_worker_released_the_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next owner may start as soon as the revoke callback returns: by then the gate must be closed
    (``owned`` updated) and the worker's release (flush, handover note) finished. Also: changes arrive in
    order, and leave() revokes everything before the group is left."""
    monkeypatch.setattr(coordination, "Consumer", _FakeConsumer)
    _FakeConsumer.instances.clear()
    seen: list[tuple[list[int], list[int]]] = []

    async def main() -> None:
        coordinator: ShardCoordinator

        async def on_change(gained: frozenset[int], lost: frozenset[int]) -> None:
            await asyncio.sleep(0.2)  # a release takes time: the revoke must wait for it
            seen.append((sorted(gained), sorted(lost)))

        coordinator = ShardCoordinator(Settings(coordination="kafka"), {}, 12, on_change)
        task = asyncio.create_task(coordinator.run())
        await asyncio.sleep(0.05)
        consumer = _FakeConsumer.instances[0]
        assert await asyncio.to_thread(consumer.subscribed.wait, 5)
        parts = [SimpleNamespace(partition=p) for p in (0, 1, 2)]
        await asyncio.to_thread(consumer.callbacks["on_assign"], consumer, parts)
        assert coordinator.joined and coordinator.owned == {0, 1, 2}
        started = time.monotonic()
        await asyncio.to_thread(consumer.callbacks["on_revoke"], consumer, parts[:1])
        assert time.monotonic() - started >= 0.2, "the revoke did not wait for the release"
        assert seen[-1] == ([], [0])
        assert coordinator.owned == {1, 2}
        await coordinator.leave()
        assert consumer.closed.is_set()
        task.cancel()

    asyncio.run(main())
    assert seen == [([0, 1, 2], []), ([], [0]), ([], [1, 2])]


class _BrokenConsumer(_FakeConsumer):
    def poll(self, timeout: float) -> None:
        raise RuntimeError("librdkafka fell over")

    def close(self) -> None:
        self.closed.set()  # a consumer that cannot revoke any more


def test_a_coordination_thread_that_dies_releases_everything_and_ends_the_worker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica that is no group member any more must not keep streaming shards the group may give to
    another replica: it releases them itself and run() raises, so the worker exits and is restarted."""
    monkeypatch.setattr(coordination, "Consumer", _BrokenConsumer)
    changes: list[tuple[list[int], list[int]]] = []

    async def main() -> None:
        async def on_change(gained: frozenset[int], lost: frozenset[int]) -> None:
            changes.append((sorted(gained), sorted(lost)))

        coordinator = ShardCoordinator(Settings(coordination="kafka"), {}, 12, on_change)
        coordinator.owned = frozenset({3, 4})  # as if assigned before the failure
        with pytest.raises(RuntimeError, match="coordination ended unexpectedly"):
            await asyncio.wait_for(coordinator.run(), 10)
        assert coordinator.owned == frozenset() and not coordinator.joined

    asyncio.run(main())
    assert changes == [([], [3, 4])]
