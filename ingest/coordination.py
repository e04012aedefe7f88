"""Scale-out through Kafka's own group protocol: replicas share the work by owning shards.

Why it is built this way (DESIGN §7):

* No home-made leader election. Replicas join one consumer group subscribed to a small *coordination topic*;
  its partitions are the shards. Kafka's group coordinator decides who owns what, notices a dead replica
  after the session timeout and moves its shards; a replica that stops cleanly leaves the group so its
  shards move at once. The group never consumes or commits: membership is all it is for.
* Work maps to shards by a stable hash that every replica computes alike (CRC-32, not Python's salted
  ``hash``): an all-market array stream (``!miniTicker@arr``) is one unit owned by one shard; per-symbol
  streams (also those the retired ``!ticker@arr`` is served as) map by their symbol, so ``btcusdt@ticker`` and
  ``btcusdt@miniTicker`` always travel together.
* Cooperative-sticky assignment: a rebalance only moves the shards that must move, and a shard is revoked
  from its old owner before it is given to the new one. On revoke we close the gate for that shard's
  frames *before* the callback returns and flush the producer, so what the old owner produced is
  acknowledged before the new owner may start; per key, Kafka keeps event-time order across the handover.
* Handover notes: when a replica releases a shard it writes, to that shard's partition, the event time of
  the last record it produced per symbol; the next owner reads the newest note before its REST snapshot
  and does not produce what the old owner already did (the snapshot's entry for a symbol is usually the very
  tick the old owner produced last). After a crash there is no fresh note, and none is needed: the
  snapshot is then newer than anything the dead replica produced. These notes are the only data on the topic.
* librdkafka serves rebalance callbacks only inside ``poll()``, and a blocking ``poll`` must not sit on the
  event loop, so one thread polls; changes go to the loop through a queue, handled one at a time in order.
  A revoke waits (bounded) until the loop has released the shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ingest.binance import streams as stream_names
from ingest.config import Settings
from ingest.fatal import FatalError

log = logging.getLogger(__name__)

HEARTBEAT_MS = 500
"""How fast a member hears of a rebalance (a leave, a join): it is told in its next heartbeat response.
Half a second keeps a clean handover well under one push interval; the cost is two tiny requests a second."""
POLL_S = 0.1
NOTE_KEY = b"handover"
NOTE_IO_TIMEOUT_S = 5.0
RELEASE_WAIT_S = 15.0
"""How long a revoke may wait for the event loop to release the shards (gate closed, producer flushed)."""

_THREAD_ENDED = threading.Event()
"""Marks the polling thread's last message to the event loop."""

OnChange = Callable[[frozenset[int], frozenset[int]], Awaitable[None]]


def shard_of(stream: str, shards: int) -> int:
    """The shard that owns a stream (as ``streams.normalize`` spells it): all-market arrays by their name,
    per-symbol streams by their symbol, so a symbol's ticker and mini ticker always share a shard."""
    unit = stream if stream in stream_names.ALL_MARKET else stream_names.symbol(stream)
    return zlib.crc32(unit.encode()) % shards


def owned_streams(streams: Iterable[str], owned: Iterable[int], shards: int) -> list[str]:
    """The streams (in their given order) whose shard is in ``owned``."""
    mine = set(owned)
    return [s for s in streams if shard_of(s, shards) in mine]


def ensure_coordination_topic(admin: AdminClient, settings: Settings, timeout_s: float = 10.0) -> int:
    """Create the coordination topic when missing; return its partition (shard) count.

    An existing topic's partition count wins over ``--coordination-shards`` so that replicas started with
    different flags still agree on the hash; a differing flag is logged, not applied (adding partitions would
    move half the work at once)."""
    topic = settings.topic("coordination")
    have = _partition_count(admin, topic, timeout_s)
    if have:
        if have != settings.coordination_shards:
            log.warning("coordination topic has %d partitions, --coordination-shards is %d; using %d", have,
                        settings.coordination_shards, have, extra={"topic": topic})
        return have
    new = NewTopic(topic, num_partitions=settings.coordination_shards,
                   replication_factor=settings.topic_replication_factor,
                   config={"cleanup.policy": "delete", "retention.ms": str(3600 * 1000)})
    future = admin.create_topics([new], request_timeout=timeout_s)[topic]
    try:
        future.result(timeout=timeout_s)
        log.info("topic created", extra={"topic": topic})
        return settings.coordination_shards
    except KafkaException as exc:
        if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: another replica is creating it right now
            raise
    deadline = time.monotonic() + timeout_s
    while not (have := _partition_count(admin, topic, timeout_s)) and time.monotonic() < deadline:
        time.sleep(0.2)  # metadata of a topic being created shows no partitions for a moment
    if not have:
        raise KafkaException(f"coordination topic {topic} shows no partitions")
    return have


def _partition_count(admin: AdminClient, topic: str, timeout_s: float) -> int:
    """Partitions of an existing, usable topic; 0 when it is missing or still being created."""
    meta = admin.list_topics(topic=topic, timeout=timeout_s).topics.get(topic)
    return len(meta.partitions) if meta is not None and meta.error is None else 0


def consumer_config(settings: Settings, client_conf: dict[str, Any]) -> dict[str, Any]:
    """Group membership only: no offsets are ever committed, nothing is read."""
    conf = dict(client_conf)
    conf.update({
        "group.id": settings.group_id,
        "client.id": "binance-ingest-coordination",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": int(settings.coordination_session_timeout_s * 1000),
        "heartbeat.interval.ms": HEARTBEAT_MS,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "latest",
    })
    return conf


class ShardCoordinator:
    """Membership of the replicas' group and the set of shards this replica owns.

    ``owned`` is updated in the polling thread *before* the worker is told, so a frame gate that reads it
    stops a revoked shard's frames at once. ``on_change(gained, lost)`` runs on the event loop, in order.
    """

    def __init__(self, settings: Settings, client_conf: dict[str, Any], shards: int, on_change: OnChange) -> None:
        self.settings = settings
        self.topic = settings.topic("coordination")
        self.shards = shards
        self.owned: frozenset[int] = frozenset()
        self.joined = False  # the first assignment (possibly empty) arrived
        self._conf = consumer_config(settings, client_conf)
        self._on_change = on_change
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[frozenset[int], frozenset[int], threading.Event | None]] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error = ""
        self._client_conf = client_conf
        self._note_producer: Producer | None = None
        self._note_reader: Consumer | None = None

    async def run(self) -> None:
        """Join the group and apply ownership changes until cancelled (call ``leave`` first to go cleanly)."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._thread = threading.Thread(target=self._poll_thread, name="coordination", daemon=True)
        self._thread.start()
        while True:
            gained, lost, done = await self._queue.get()
            if done is _THREAD_ENDED:
                if self._stop.is_set():
                    continue  # leave() asked for it
                raise RuntimeError(f"coordination ended unexpectedly: {self.last_error}")
            try:
                await self._on_change(gained, lost)
            except FatalError:  # e.g. the gain snapshot met a fatal producer error: the worker must end
                raise
            except Exception:  # a failed change must not end membership; the next change re-applies the state
                log.exception("applying a shard change failed")
            finally:
                if done is not None:
                    done.set()

    async def leave(self, timeout_s: float = 30.0) -> None:
        """Leave the group cleanly: the revoke releases every shard, then the coordinator hands them on."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._stop.set()
        await asyncio.to_thread(thread.join, timeout_s)

    # ---- handover notes (blocking: call through asyncio.to_thread) ----------------------------------------

    def write_notes(self, notes: dict[int, dict[str, dict[str, int]]]) -> int:
        """Write ``{shard: {kind: {symbol: last event time}}}``, one record per shard to its partition; wait for
        the acknowledgements. Returns how many were acknowledged."""
        if self._note_producer is None:
            self._note_producer = Producer({**self._client_conf, "acks": "all", "enable.idempotence": True,
                                            "client.id": "binance-ingest-handover", "linger.ms": 0})
        acked = []
        for shard, last_event in notes.items():
            value = orjson.dumps({"shard": shard, "written_at": int(time.time() * 1000), "last_event": last_event})
            self._note_producer.produce(self.topic, value, NOTE_KEY, partition=shard,
                                        on_delivery=lambda err, _msg: acked.append(err is None))
        self._note_producer.flush(NOTE_IO_TIMEOUT_S)
        return sum(acked)

    def read_notes(self, shards: Iterable[int]) -> dict[int, dict[str, dict[str, int]]]:
        """The newest note of each shard (the last record of its partition), if any."""
        if self._note_reader is None:
            self._note_reader = Consumer({**self._client_conf, "group.id": self.settings.group_id + ".notes",
                                          "enable.auto.commit": False, "client.id": "binance-ingest-handover"})
        reader = self._note_reader
        wanted: dict[int, int] = {}
        for shard in shards:
            low, high = reader.get_watermark_offsets(TopicPartition(self.topic, shard), timeout=NOTE_IO_TIMEOUT_S)
            if high > low:
                wanted[shard] = high - 1
        if not wanted:
            return {}
        reader.assign([TopicPartition(self.topic, shard, offset) for shard, offset in wanted.items()])
        notes: dict[int, dict[str, dict[str, int]]] = {}
        deadline = time.monotonic() + NOTE_IO_TIMEOUT_S
        try:
            while len(notes) < len(wanted) and time.monotonic() < deadline:
                msg = reader.poll(0.2)
                partition = msg.partition() if msg is not None and msg.error() is None else None
                if msg is None or partition is None or partition not in wanted:
                    continue
                try:
                    notes[partition] = orjson.loads(msg.value() or b"{}").get("last_event", {})
                except (orjson.JSONDecodeError, AttributeError):
                    log.warning("unreadable handover note", extra={"shard": partition})
                    notes[partition] = {}
        finally:
            reader.unassign()
        return notes

    def close_clients(self) -> None:
        """Close the handover-note clients at shutdown (after ``leave``, whose revoke may still write notes)."""
        if self._note_reader is not None:
            self._note_reader.close()
        if self._note_producer is not None:
            self._note_producer.flush(NOTE_IO_TIMEOUT_S)

    # ---- the polling thread ------------------------------------------------------------------------------

    def _poll_thread(self) -> None:
        consumer = Consumer(self._conf)
        try:
            consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost)
            while not self._stop.is_set():
                msg = consumer.poll(POLL_S)
                error = msg.error() if msg is not None else None
                if error is not None:
                    self.last_error = str(error)
                    log.warning("coordination: %s", error)
                    if error.fatal():  # e.g. not authorized for the group: no way to stay a member
                        raise KafkaException(error)
        except Exception as exc:
            self.last_error = self.last_error or repr(exc)
            log.exception("coordination thread failed")
        finally:
            with contextlib.suppress(Exception):
                consumer.close()  # revokes what we own (callback below), then leaves the group
            if self.owned:  # close() could not revoke: release here, we are no member any more
                self._revoked(consumer, [TopicPartition(self.topic, p) for p in sorted(self.owned)])
            self.joined = False
            log.info("left the coordination group", extra={"topic": self.topic})
            # A thread that ends without leave() makes run() raise: the worker exits and is restarted,
            # rather than streaming shards the group may have given to another replica.
            self._post(frozenset(), frozenset(), wait=False, done=_THREAD_ENDED)

    def _assigned(self, _consumer: Consumer, partitions: list[Any]) -> None:
        gained = frozenset(p.partition for p in partitions)
        self.owned = self.owned | gained
        self.joined = True
        log.info("shards assigned", extra={"gained": sorted(gained), "owned": sorted(self.owned)})
        self._post(gained, frozenset(), wait=False)

    def _revoked(self, _consumer: Consumer, partitions: list[Any]) -> None:
        lost = frozenset(p.partition for p in partitions)
        self.owned = self.owned - lost
        log.info("shards revoked", extra={"lost": sorted(lost), "owned": sorted(self.owned)})
        self._post(frozenset(), lost, wait=True)

    def _lost(self, _consumer: Consumer, partitions: list[Any]) -> None:
        """Our session expired (e.g. the process was frozen): another replica may already own these."""
        log.warning("shards lost (session expired)", extra={"lost": sorted(p.partition for p in partitions)})
        self._revoked(_consumer, partitions)

    def _post(self, gained: frozenset[int], lost: frozenset[int], *, wait: bool,
              done: threading.Event | None = None) -> None:
        if self._loop is None or self._queue is None or self._loop.is_closed():
            return
        if wait:
            done = threading.Event()
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (gained, lost, done))
        except RuntimeError:  # the loop closed meanwhile: nobody left to release anything
            return
        if wait and done is not None and not done.wait(RELEASE_WAIT_S):
            log.warning("shards released late: the event loop did not answer in %.0f s", RELEASE_WAIT_S)
