"""`ingest tail` against the real stack: records written with our Avro encoder (registered in the real registry)
come back decoded, in order, filtered by key, from the beginning or from the end; dead letters show their
headers and raw payload."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ingest.avro import make_client, register_schemas

pytestmark = pytest.mark.integration

SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBBTC")
EVENT_MS = 1_764_460_800_000  # 2025-11-30T00:00:00Z


def mini(i: int) -> dict:
    symbol = SYMBOLS[i % len(SYMBOLS)]
    return {"event_type": "24hrMiniTicker", "event_time": EVENT_MS + i * 1000, "symbol": symbol,
            "close_price": f"{100 + i}.50000000", "open_price": "100.00000000", "high_price": f"{110 + i}.0",
            "low_price": "99.00000000", "base_volume": f"{1000 + i}.125", "quote_volume": "123456.78900000",
            "ingest_time": (EVENT_MS + i * 1000) * 1000 + 123, "source": "websocket", "stream": "!miniTicker@arr",
            "connection_id": None if i % 2 else "c-1"}


@pytest.fixture
def topics(stack_endpoints, unique_prefix):
    """The miniticker and dead-letter topics under a fresh prefix, and a producer of encoded records."""
    admin = AdminClient({"bootstrap.servers": stack_endpoints.bootstrap_servers})
    names = {kind: f"{unique_prefix}.{kind}" for kind in ("miniticker", "deadletter")}
    futures = admin.create_topics([NewTopic(names["miniticker"], 3), NewTopic(names["deadletter"], 1)])
    for future in futures.values():
        future.result(timeout=30)
    client = make_client(stack_endpoints.registry_url)
    encoder = register_schemas(client, {"miniticker": names["miniticker"]})["miniticker"]
    client.close()
    producer = Producer({"bootstrap.servers": stack_endpoints.bootstrap_servers})

    def produce(values: list[dict]) -> None:
        for value in values:
            producer.produce(names["miniticker"], key=value["symbol"].encode(), value=encoder.encode(value))
        assert producer.flush(30) == 0

    return names, produce, producer


def tail_cmd(stack_endpoints, *args: str) -> list[str]:
    return [sys.executable, "-m", "ingest.cli", "tail", "--bootstrap-servers", stack_endpoints.bootstrap_servers,
            "--schema-registry-url", stack_endpoints.registry_url, *args]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}


def run_tail(stack_endpoints, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(tail_cmd(stack_endpoints, *args), capture_output=True, text=True, timeout=60, env=env())


def as_sent(printed: dict) -> dict:
    """A printed value back in the encoder's terms (times as epoch ms/us) to compare with what was sent."""
    value = dict(printed)
    value["event_time"] = round(datetime.fromisoformat(value["event_time"]).timestamp() * 1000)
    ingest = datetime.fromisoformat(value["ingest_time"])
    value["ingest_time"] = round((ingest - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
    return value


def test_from_beginning_prints_every_record_decoded(stack_endpoints, topics):
    names, produce, _ = topics
    sent = [mini(i) for i in range(12)]
    produce(sent)
    result = run_tail(stack_endpoints, names["miniticker"], "--from-beginning", "--max", "12", "--format", "json")
    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 12
    by_time = sorted(lines, key=lambda r: r["value"]["event_time"])  # partitions interleave; each keeps order
    assert [as_sent(r["value"]) for r in by_time] == sent
    assert all(r["key"] == r["value"]["symbol"] and r["topic"] == names["miniticker"] for r in lines)
    assert len({r["schema_id"] for r in lines}) == 1
    assert f"tail: reading {names['miniticker']} (3 partitions) from the beginning" in result.stderr


def test_key_filter_and_exit_at_end(stack_endpoints, topics, unique_prefix):
    _, produce, _ = topics
    sent = [mini(i) for i in range(9)]
    produce(sent)
    # A bare kind means the topic under --topic-prefix; --exit-at-end stops at the end without --max.
    result = run_tail(stack_endpoints, "miniticker", "--topic-prefix", unique_prefix, "--from-beginning",
                      "--key", "ethusdt", "--exit-at-end")
    assert result.returncode == 0, result.stderr
    printed = [orjson.loads(line)["value"] for line in result.stdout.splitlines()]
    assert [as_sent(v) for v in printed] == [v for v in sent if v["symbol"] == "ETHUSDT"]


def test_from_the_end_prints_only_new_records(stack_endpoints, topics):
    names, produce, _ = topics
    produce([mini(i) for i in range(6)])
    proc = subprocess.Popen(tail_cmd(stack_endpoints, names["miniticker"], "--max", "2", "--format", "json"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        assert proc.stderr is not None
        assert "from the end" in proc.stderr.readline()  # printed once the end offsets are pinned
        new = [mini(100), mini(101)]
        produce(new)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    printed = sorted((orjson.loads(line)["value"] for line in out.splitlines()), key=lambda v: v["event_time"])
    assert [as_sent(v) for v in printed] == new


def test_dead_letters_show_headers_and_the_raw_payload(stack_endpoints, topics, unique_prefix):
    names, _, producer = topics
    payload = b'{"stream":"!miniTicker@arr","data":[{"e":"24hrMiniTicker","s":"BTCUSDT","c":"x"}]}'
    producer.produce(names["deadletter"], key=b"!miniTicker@arr", value=payload,
                     headers=[("reason", b"invalid_decimal"), ("stream", b"!miniTicker@arr"),
                              ("received_time", str(time.time_ns() // 1000).encode())])
    producer.produce(names["deadletter"], key=b"x", value=b"\x00\x00\x00\x00\x07garbage",
                     headers=[("reason", b"test")])
    assert producer.flush(30) == 0
    result = run_tail(stack_endpoints, "deadletter", "--topic-prefix", unique_prefix, "--from-beginning",
                      "--max", "2", "--format", "json")
    assert result.returncode == 0, result.stderr
    first, second = (orjson.loads(line) for line in result.stdout.splitlines())
    assert first["headers"]["reason"] == "invalid_decimal" and first["headers"]["stream"] == "!miniTicker@arr"
    assert first["payload"] == payload.decode() and "value" not in first
    # Framed-looking bytes whose schema id does not resolve are shown raw with the reason, never dropped.
    assert second["error"].startswith("not decodable:") and second["payload"].endswith("garbage")


def test_table_format_aligns_columns(stack_endpoints, topics):
    names, produce, _ = topics
    produce([mini(i) for i in range(3)])
    result = run_tail(stack_endpoints, names["miniticker"], "--from-beginning", "--max", "3", "--format", "table")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["time", "partition:offset", "key", "close_price", "open_price", "high_price",
                              "low_price", "base_volume", "quote_volume"]
    assert len(rows) == 3
    start = header.index("close_price")
    assert sorted(row[start:].split()[0] for row in rows) == ["100.50000000", "101.50000000", "102.50000000"]


def test_missing_topic_and_unreachable_kafka_are_one_line(stack_endpoints, unique_prefix):
    missing = run_tail(stack_endpoints, f"{unique_prefix}.nothing", "--max", "1")
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"ingest tail: topic {unique_prefix}.nothing does not exist"
    dead = subprocess.run([sys.executable, "-m", "ingest.cli", "tail", "x", "--bootstrap-servers", "127.0.0.1:1",
                           "--schema-registry-url", stack_endpoints.registry_url], capture_output=True, text=True,
                          timeout=60, env=env())
    assert dead.returncode == 1
    assert len(dead.stderr.strip().splitlines()) == 1 and "unreachable" in dead.stderr
