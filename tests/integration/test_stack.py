"""The test stack is real: a topic, an Avro schema in the registry, a framed record keyed by symbol."""

from __future__ import annotations

import struct
import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

pytestmark = pytest.mark.integration

SCHEMA = """
{"type": "record", "name": "Probe", "namespace": "test.stack",
 "fields": [{"name": "symbol", "type": "string"}, {"name": "price", "type": "string"}]}
"""


def test_produce_and_consume_framed_avro(stack_endpoints, unique_prefix):
    print(f"stack provider: {stack_endpoints.provider} at {stack_endpoints.bootstrap_servers}, "
          f"{stack_endpoints.registry_url}")
    topic = f"{unique_prefix}.probe"
    admin = AdminClient({"bootstrap.servers": stack_endpoints.bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=30)

    with SchemaRegistryClient({"url": stack_endpoints.registry_url}) as registry:
        _round_trip(stack_endpoints, registry, topic)


def _round_trip(stack_endpoints, registry, topic):
    serializer = AvroSerializer(registry, SCHEMA)
    ctx = SerializationContext(topic, MessageField.VALUE)
    payload = serializer({"symbol": "BTCUSDT", "price": "43250.50000000"}, ctx)

    producer = Producer({"bootstrap.servers": stack_endpoints.bootstrap_servers, "enable.idempotence": True,
                         "acks": "all"})
    producer.produce(topic, key=b"BTCUSDT", value=payload)
    assert producer.flush(30) == 0

    # Confluent wire format: magic byte 0, then the registry's schema id as a 4-byte big-endian int.
    magic, schema_id = struct.unpack(">bI", payload[:5])
    assert magic == 0
    assert registry.get_latest_version(f"{topic}-value").schema_id == schema_id

    consumer = Consumer({"bootstrap.servers": stack_endpoints.bootstrap_servers, "group.id": topic,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    msg = None
    while time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            break
    consumer.close()
    assert msg is not None and msg.error() is None
    assert msg.key() == b"BTCUSDT"
    decoded = AvroDeserializer(registry)(msg.value(), ctx)
    assert decoded == {"symbol": "BTCUSDT", "price": "43250.50000000"}
