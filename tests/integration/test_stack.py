"""The test stack is real: a topic, an Avro schema in the registry, a framed record keyed by symbol."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

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


def _ingest(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingest.cli", *args], capture_output=True, text=True, timeout=240,
                          env=env)


def _our_pids(state_dir) -> list[int]:
    marker = f"-Dbinance.ingest.stack={state_dir}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.mark.skipif(os.environ.get("KAFKA_BOOTSTRAP_SERVERS") is not None, reason="uses the local JVM stack")
def test_stack_cli_up_twice_then_down_leaves_nothing(tmp_path):
    state = tmp_path / "stack"
    first = _ingest("stack", "up", "--state-dir", str(state))
    assert first.returncode == 0, first.stderr
    assert all(line.startswith("export ") for line in first.stdout.splitlines())  # eval "$(...)" exports them
    env_lines = dict(line.removeprefix("export ").split("=", 1) for line in first.stdout.splitlines())
    assert set(env_lines) == {"KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL"}
    assert env_lines["SCHEMA_REGISTRY_URL"].endswith("/apis/ccompat/v7")
    pids = _our_pids(state.resolve())
    assert len(pids) == 2

    again = _ingest("stack", "up", "--state-dir", str(state))
    assert again.returncode == 0 and again.stdout == first.stdout  # same processes, same addresses
    assert sorted(_our_pids(state.resolve())) == sorted(pids)
    status = _ingest("stack", "status", "--state-dir", str(state))
    assert status.returncode == 0 and '"running": true' in status.stdout

    down = _ingest("stack", "down", "--state-dir", str(state))
    assert down.returncode == 0
    assert _our_pids(state.resolve()) == []
    assert _ingest("stack", "status", "--state-dir", str(state)).returncode == 3


def test_stack_cli_port_taken_is_a_one_line_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = _ingest("stack", "up", "--state-dir", str(tmp_path / "s"), "--kafka-port", str(port))
    assert result.returncode == 2  # the user's choice, like any bad setting
    assert result.stderr.strip().count("\n") == 0
    assert f"port {port} for Kafka is taken" in result.stderr
    assert _our_pids((tmp_path / "s").resolve()) == []


def test_stack_cli_missing_java_is_a_one_line_error(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # neither java nor mvn on PATH
    env["INGEST_STACK_CACHE"] = str(tmp_path / "empty-cache")
    result = _ingest("stack", "up", "--state-dir", str(tmp_path / "s"), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "java not found on PATH" in result.stderr
