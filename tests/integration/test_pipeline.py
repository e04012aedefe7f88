"""End to end: simulator -> `ingest run` -> real Kafka + registry, checked against the simulator's sent-log.

What reached Kafka is compared with ground truth (every ticker the simulator sent, from its sent-log),
record by record: exactly once, key = symbol, partition = Java's murmur2 partition, schema id resolving in
the registry, and every decimal string equal to what was sent.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter

import avro.io
import avro.schema
import pytest

from tests.kafka_reading import RegistryDecoder, java_partition, partitions_of, read_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MINI_FIELDS = {"c": "close_price", "o": "open_price", "h": "high_price", "l": "low_price", "v": "base_volume",
               "q": "quote_volume"}
TICKER_FIELDS = {**MINI_FIELDS, "p": "price_change", "P": "price_change_percent", "w": "weighted_avg_price",
                 "x": "first_trade_price", "Q": "last_quantity", "b": "best_bid_price", "B": "best_bid_qty",
                 "a": "best_ask_price", "A": "best_ask_qty", "O": "stats_open_time", "C": "stats_close_time",
                 "F": "first_trade_id", "L": "last_trade_id", "n": "trade_count"}


def _symbols(sim, count: int) -> list[str]:
    _, _, info = sim.request("/api/v3/exchangeInfo")
    return [s["symbol"] for s in info["symbols"] if s["status"] == "TRADING"][:count]


def _drain(sim, worker, topic_kind: str, seconds: float) -> None:
    """Let data flow, then silence the simulator so the worker catches up with everything sent."""
    time.sleep(seconds)
    sim.fault("silence", seconds=30)
    time.sleep(0.5)
    last = -1.0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # until produced stops moving
        now = worker.metric("binance_ingest_records_produced_total")
        if now == last:
            break
        last = now
        time.sleep(1.0)


def _field_value(record: dict, avro_name: str) -> object:
    value = record[avro_name]
    if hasattr(value, "timestamp"):  # timestamp-millis decoded as datetime
        return round(value.timestamp() * 1000)
    return value


@pytest.mark.parametrize("case", ["!miniTicker@arr", "!ticker@arr", "!ticker@arr literal", "symbol@miniTicker",
                                  "symbol@ticker"])
def test_every_sent_ticker_is_in_kafka_exactly_once(case, sim_factory, worker_factory, stack_endpoints,
                                                     unique_prefix):
    # "!ticker@arr": retired by Binance (2026-03-26), served as <symbol>@ticker per TRADING symbol; "literal":
    # subscribed as it is, against a simulator that still serves it (--serve-retired-streams), as a replay would.
    literal = case.endswith(" literal")
    sim = sim_factory(symbols=12, interval=0.25, seed=7, serve_retired_streams=literal)
    extra = ["--literal-ticker-arr", "true"] if literal else []
    case = case.removesuffix(" literal")
    if case.startswith("symbol@"):
        suffix = case.split("@")[1]
        streams = [f"{s.lower()}@{suffix}" for s in _symbols(sim, 4)]
    else:
        streams = [case]
    kind = "ticker" if streams[0].endswith("@ticker") or streams[0] == "!ticker@arr" else "miniticker"
    combined = "true" if case in ("!miniTicker@arr", "symbol@ticker") else "false"  # both URL styles covered
    worker = worker_factory("--streams", ",".join(streams), "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", unique_prefix, "--snapshot-on-connect", "false",
                            "--combined", combined, *extra)
    if case == "!ticker@arr" and not literal:
        streams = [f"{s.lower()}@ticker" for s in _symbols(sim, 1000)]
    worker.wait_ready()
    _drain(sim, worker, kind, seconds=3.0)
    assert worker.stop() == 0

    sent = [line for line in sim.sent_records() if line.get("kind") == kind and "fault" not in line]
    assert len(sent) > 20, "the simulator should have sent a fair number of tickers"
    topic = f"{unique_prefix}.{kind}"
    records = read_all(stack_endpoints.bootstrap_servers, topic)
    partitions = partitions_of(stack_endpoints.bootstrap_servers, topic)
    decoder = RegistryDecoder(stack_endpoints.registry_url)

    in_kafka: Counter[tuple[str, int]] = Counter()
    decoded_by_key: dict[tuple[str, int], dict] = {}
    for rec in records:
        _, value = decoder.decode(rec.raw)
        assert rec.key == value["symbol"].encode()
        assert rec.partition == java_partition(rec.key, partitions)
        assert rec.timestamp_ms == _field_value(value, "event_time")
        assert value["source"] == "websocket"
        assert value["stream"] in streams
        ident = (value["symbol"], _field_value(value, "event_time"))
        in_kafka[ident] += 1
        decoded_by_key[ident] = value
    dupes = [k for k, n in in_kafka.items() if n > 1]
    assert not dupes, f"duplicates in Kafka: {dupes[:5]}"

    fields = TICKER_FIELDS if kind == "ticker" else MINI_FIELDS
    expected = {(line["symbol"], line["E"]): line["data"] for line in sent}
    assert set(in_kafka) == set(expected), (
        f"missing {len(set(expected) - set(in_kafka))}, unexpected {len(set(in_kafka) - set(expected))}")
    for ident, data in expected.items():
        got = decoded_by_key[ident]
        for binance_key, avro_name in fields.items():
            assert _field_value(got, avro_name) == data[binance_key], (ident, avro_name)
    assert worker.returncode == 0


def test_records_decode_with_a_different_avro_library(sim_factory, worker_factory, stack_endpoints, unique_prefix):
    """Apache Avro (not fastavro) reads every record after resolving the writer schema by id."""
    sim = sim_factory(symbols=8, interval=0.25, seed=3)
    worker = worker_factory("--streams", "!ticker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", unique_prefix)
    worker.wait_ready()
    _drain(sim, worker, "ticker", seconds=2.0)
    worker.stop()
    records = read_all(stack_endpoints.bootstrap_servers, f"{unique_prefix}.ticker")
    assert records
    decoder = RegistryDecoder(stack_endpoints.registry_url)
    readers: dict[int, avro.io.DatumReader] = {}
    for rec in records:
        schema_id = int.from_bytes(rec.raw[1:5], "big")
        if schema_id not in readers:
            decoder.schema(schema_id)
            readers[schema_id] = avro.io.DatumReader(avro.schema.parse(decoder.schema_texts[schema_id]))
        value = readers[schema_id].read(avro.io.BinaryDecoder(io.BytesIO(rec.raw[5:])))
        assert value["symbol"].encode() == rec.key
        assert value["source"] in ("websocket", "rest_snapshot")
        _, ours = decoder.decode(rec.raw)
        assert value["close_price"] == ours["close_price"]
        assert value["trade_count"] == ours["trade_count"]


def test_symbols_topic_follows_exchange_info_and_a_new_listing_is_streamed(sim_factory, worker_factory,
                                                                           stack_endpoints, unique_prefix):
    sim = sim_factory(symbols=10, interval=0.25, seed=5)
    worker = worker_factory("--streams", "@miniTicker", "--quote-assets", "BTC", "--ws-url", sim.ws_url,
                            "--rest-url", sim.http_url, "--topic-prefix", unique_prefix,
                            "--exchange-info-refresh-s", "1")
    worker.wait_ready()
    _, _, info = sim.request("/api/v3/exchangeInfo")
    exchange_symbols = {s["symbol"] for s in info["symbols"]}

    sim.listing("NEWCOINBTC", "NEWCOIN", "BTC")
    worker.wait_for(lambda: worker.metric("binance_ingest_symbols_listed_total") >= 1, 15, "the listing")
    time.sleep(3.0)
    worker.stop()

    symbol_keys = {r.key.decode() for r in read_all(stack_endpoints.bootstrap_servers, f"{unique_prefix}.symbols")}
    assert symbol_keys == exchange_symbols | {"NEWCOINBTC"}
    decoder = RegistryDecoder(stack_endpoints.registry_url)
    new_ticks = [decoder.decode(r.raw)[1] for r in read_all(stack_endpoints.bootstrap_servers,
                                                             f"{unique_prefix}.miniticker") if r.key == b"NEWCOINBTC"]
    assert any(t["source"] == "websocket" and t["stream"] == "newcoinbtc@miniTicker" for t in new_ticks)


def test_snapshot_after_forced_reconnect_is_marked(sim_factory, worker_factory, stack_endpoints, unique_prefix):
    # One random symbol ticks at a time (rate 4/s over 5 symbols): the first frame after the reconnect carries
    # one symbol, and the snapshot restores the others that ticked while the worker heard nothing. (When every
    # symbol ticks in every frame, the frame that proves the connection delivers is already newer than any
    # snapshot entry, and a snapshot of TRADING symbols produces nothing.)
    sim = sim_factory(symbols=5, interval=0.25, rate=4, seed=9)
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", unique_prefix, "--backoff-initial-s", "0.2")
    worker.wait_ready()
    time.sleep(1.0)
    before = worker.metric("binance_ingest_records_accepted_total", source="rest_snapshot")
    sim.fault("silence", seconds=3)  # the market moves on while the worker hears nothing
    time.sleep(1.5)
    sim.fault("close", code=1011)
    worker.wait_for(lambda: worker.metric("binance_ingest_ws_reconnects_total", reason="1011") >= 1, 15,
                    "a reconnect counted with reason 1011")
    worker.wait_for(lambda: worker.metric("binance_ingest_records_accepted_total", source="rest_snapshot") > before,
                    15, "snapshot records after the reconnect")
    time.sleep(1.0)
    worker.stop()
    decoder = RegistryDecoder(stack_endpoints.registry_url)
    values = [decoder.decode(r.raw)[1] for r in read_all(stack_endpoints.bootstrap_servers,
                                                          f"{unique_prefix}.miniticker")]
    snapshots = [v for v in values if v["source"] == "rest_snapshot"]
    assert snapshots and all(v["stream"] == "rest:ticker/24hr" and v["connection_id"] is None for v in snapshots)
    log_events = [e.get("event") for e in worker.log_events()]
    assert log_events.count("snapshot produced") >= 2, json.dumps(log_events[-20:])
