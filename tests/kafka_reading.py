"""Test helpers that read what the worker wrote: consume a topic whole, decode via the registry, partition math.

The murmur2 here is written from the Java client's definition (``org.apache.kafka.common.utils.Utils``),
independently of librdkafka, so a test can prove our partitioning matches Java's default partitioner.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from typing import Any

import fastavro
from confluent_kafka import Consumer, TopicPartition

M = 0x5BD1E995
MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c), as a signed 32-bit int like Java's ``Utils.murmur2``."""
    length = len(data)
    h = (0x9747B28C ^ length) & MASK
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * M) & MASK
        k ^= k >> 24
        k = (k * M) & MASK
        h = (h * M) & MASK
        h ^= k
    rest = length % 4
    tail = length - rest
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * M) & MASK
    h ^= h >> 13
    h = (h * M) & MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    """``Utils.toPositive(Utils.murmur2(key)) % numPartitions`` — Java's default partitioner for keyed records."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class Read:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes
    timestamp_ms: int
    headers: dict[str, bytes]


def read_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Read]:
    """Every record of ``topic`` from the beginning up to the end offsets at call time."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = sorted(meta.partitions)
        ends = {}
        for p in parts:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[Read] = []
        done = {p for p in parts if ends[p] == 0}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(parts) and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10000, timeout=0.5):
                if msg.error() is not None:
                    continue
                out.append(Read(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                                msg.timestamp()[1], dict(msg.headers() or [])))
                if msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
        assert len(done) == len(parts), f"timed out reading {topic}"
        return out
    finally:
        consumer.close()


def partitions_of(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "meta"})
    try:
        return len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    finally:
        consumer.close()


class RegistryDecoder:
    """Decode Confluent-framed Avro by resolving the writer schema id in the registry (plain HTTP)."""

    def __init__(self, registry_url: str) -> None:
        self.url = registry_url.rstrip("/")
        self._schemas: dict[int, Any] = {}
        self.schema_texts: dict[int, str] = {}

    def schema(self, schema_id: int) -> Any:
        if schema_id not in self._schemas:
            import urllib.request

            with urllib.request.urlopen(f"{self.url}/schemas/ids/{schema_id}", timeout=10) as resp:
                text = json.loads(resp.read())["schema"]
            self.schema_texts[schema_id] = text
            self._schemas[schema_id] = fastavro.parse_schema(json.loads(text))
        return self._schemas[schema_id]

    def decode(self, data: bytes) -> tuple[int, dict[str, Any]]:
        assert data[0] == 0, "magic byte"
        schema_id = int.from_bytes(data[1:5], "big")
        return schema_id, fastavro.schemaless_reader(io.BytesIO(data[5:]), self.schema(schema_id), None)
