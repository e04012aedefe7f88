"""Against the REAL Schema Registry (Apicurio's Confluent API): registration, BACKWARD, check, interop.

The interoperability proof: records encoded by us (fastavro + our framing) are decoded by the Apache
Avro library, a different implementation, using only the schema the registry returns for the id found in
the framing, the way a Java or Kafka Streams consumer would.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
from datetime import UTC, datetime

import avro.io
import avro.schema
import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError

from ingest import schemas_cli
from ingest.avro import SCHEMA_FILES, check_compatibility, load_schema, make_client, register_schemas, split_framing
from ingest.binance.events import parse_frame, snapshot_records, symbol_info_value

pytestmark = pytest.mark.integration

NOW_US = 1_710_038_821_123_456


@pytest.fixture
def client(schema_registry_url: str) -> SchemaRegistryClient:
    c = make_client(schema_registry_url)
    yield c
    c.close()


@pytest.fixture
def topics(unique_prefix: str) -> dict[str, str]:
    return {kind: f"{unique_prefix}.{kind}" for kind in SCHEMA_FILES}


def with_new_field(kind: str, default: bool) -> dict:
    schema = copy.deepcopy(load_schema(kind))
    field = {"name": "added_later", "type": "string", "doc": "test field"}
    if default:
        field["default"] = ""
    schema["fields"].append(field)
    return schema


def test_register_under_topic_value_with_backward_and_ids_resolve(client: SchemaRegistryClient,
                                                                  topics: dict[str, str]) -> None:
    encoders = register_schemas(client, topics)
    assert set(encoders) == set(SCHEMA_FILES)
    for kind, topic in topics.items():
        subject = f"{topic}-value"
        assert subject in client.get_subjects()
        assert client.get_compatibility(subject) == "BACKWARD"
        registered = client.get_schema(encoders[kind].schema_id)
        assert json.loads(registered.schema_str) == load_schema(kind)
        assert client.get_latest_version(subject).schema_id == encoders[kind].schema_id
    again = register_schemas(client, topics)
    assert {k: e.schema_id for k, e in again.items()} == {k: e.schema_id for k, e in encoders.items()}


def test_check_passes_for_same_schema_and_fails_for_incompatible_change(client: SchemaRegistryClient,
                                                                        topics: dict[str, str]) -> None:
    assert {r.status for r in check_compatibility(client, topics)} == {"new"}
    register_schemas(client, topics)
    assert {r.status for r in check_compatibility(client, topics)} == {"compatible"}

    breaking = check_compatibility(client, topics, schemas={"ticker": with_new_field("ticker", default=False)})
    assert [(r.subject, r.status) for r in breaking if not r.ok] == [(f"{topics['ticker']}-value", "incompatible")]
    fine = check_compatibility(client, topics, schemas={"ticker": with_new_field("ticker", default=True)})
    assert all(r.ok for r in fine)

    # BACKWARD is enforced by the registry itself, not only reported by check.
    with pytest.raises(SchemaRegistryError) as refused:
        register_schemas(client, {"ticker": topics["ticker"]}, schemas={"ticker": with_new_field("ticker", False)})
    assert refused.value.http_status_code == 409


def test_cli_check_and_register_against_the_registry(schema_registry_url: str, unique_prefix: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    schemas_cli.add_arguments(parser)

    def run(action: str) -> int:
        return schemas_cli.main(parser.parse_args([action, "--schema-registry-url", schema_registry_url,
                                                   "--topic-prefix", unique_prefix]))

    assert run("check") == 0
    assert run("register") == 0
    assert run("check") == 0
    out = capsys.readouterr().out
    assert f"{unique_prefix}.ticker-value: Ticker.avsc new" in out
    assert f"{unique_prefix}.ticker-value: Ticker.avsc compatible" in out


def test_cli_check_fails_naming_the_subject_whose_registered_schema_is_incompatible(
        client: SchemaRegistryClient, schema_registry_url: str, unique_prefix: str, topics: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    # The registry holds a Ticker whose trade_count is a string: under BACKWARD our schema (a long) would have
    # to read data written with it, which it cannot.
    registered = copy.deepcopy(load_schema("ticker"))
    next(f for f in registered["fields"] if f["name"] == "trade_count")["type"] = "string"
    register_schemas(client, {"ticker": topics["ticker"]}, schemas={"ticker": registered})
    parser = argparse.ArgumentParser()
    schemas_cli.add_arguments(parser)
    code = schemas_cli.main(parser.parse_args(["check", "--schema-registry-url", schema_registry_url,
                                               "--topic-prefix", unique_prefix]))
    assert code == 1
    assert f"incompatible with the registry: {topics['ticker']}-value" in capsys.readouterr().err


def apache_avro_decode(client: SchemaRegistryClient, data: bytes) -> dict:
    schema_id, body = split_framing(data)
    writer_schema = avro.schema.parse(client.get_schema(schema_id).schema_str)
    return avro.io.DatumReader(writer_schema).read(avro.io.BinaryDecoder(io.BytesIO(body)))


def millis(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def test_records_we_encode_are_decoded_by_apache_avro_via_the_registry(client: SchemaRegistryClient,
                                                                       topics: dict[str, str]) -> None:
    encoders = register_schemas(client, topics)
    frame = orjson.dumps({"stream": "!miniTicker@arr", "data": [
        {"e": "24hrMiniTicker", "E": 1710038400000, "s": "LUNCUSDT", "c": "0.00012345", "o": "0.00011000",
         "h": "0.00013000", "l": "0.00010000", "v": "284227394804.05000000", "q": "35123456.78"}]})
    (batch,) = parse_frame(frame, default_stream="x", connection_id="c-1", ingest_time_us=NOW_US,
                           max_frame_bytes=1 << 20).batches
    (value,) = encoders["miniticker"].encode_tickers(batch.items, batch.frame_fields())  # the worker's path
    decoded = apache_avro_decode(client, value)
    assert decoded["base_volume"] == "284227394804.05000000" and decoded["close_price"] == "0.00012345"
    assert decoded["event_time"] == millis(1710038400000)
    assert decoded["source"] == "websocket" and decoded["stream"] == "!miniTicker@arr"
    assert decoded["connection_id"] == "c-1"

    rest = {"symbol": "ETHBTC", "priceChange": "-0.00041000", "priceChangePercent": "-0.713",
            "weightedAvgPrice": "0.05731207", "prevClosePrice": "0.05749000", "lastPrice": "0.05708000",
            "lastQty": "3.12500000", "bidPrice": "0.05707000", "bidQty": "12.50000000", "askPrice": "0.05708000",
            "askQty": "21.75000000", "openPrice": "0.05749500", "highPrice": "0.05790000",
            "lowPrice": "0.05690000", "volume": "18000.25000000", "quoteVolume": "1031.51234567",
            "openTime": 1709952000000, "closeTime": 1710038400000, "firstId": -1, "lastId": -1, "count": 0}
    (batch,), _ = snapshot_records([rest], kinds={"ticker"}, ingest_time_us=NOW_US)
    (ticker,) = batch.records()
    (value,) = encoders["ticker"].encode_tickers(batch.items, batch.frame_fields())
    decoded = apache_avro_decode(client, value)
    for key, value in ticker.value.items():
        if key in ("event_time", "stats_open_time", "stats_close_time"):
            assert decoded[key] == millis(value), key
        elif key == "ingest_time":
            assert decoded[key] == datetime.fromtimestamp(value // 1_000_000, tz=UTC).replace(
                microsecond=value % 1_000_000)
        else:
            assert decoded[key] == value, key

    symbol = symbol_info_value({"symbol": "ETHBTC", "status": "TRADING", "baseAsset": "ETH",
                                "baseAssetPrecision": 8, "quoteAsset": "BTC", "quotePrecision": 8,
                                "quoteAssetPrecision": 8, "filters": [{"filterType": "LOT_SIZE",
                                                                       "minQty": "0.00010000"}],
                                "ocoAllowed": True}, first_seen_ms=1, last_seen_ms=2, ingest_time_us=NOW_US)
    decoded = apache_avro_decode(client, encoders["symbols"].encode(symbol))
    assert decoded["filters"] == [{"filter_type": "LOT_SIZE", "params": {"minQty": "0.00010000"}}]
    assert decoded["flags"] == {"ocoAllowed": True} and decoded["is_spot_trading_allowed"] is None


def test_basic_auth_client_talks_to_the_registry(schema_registry_url: str, topics: dict[str, str]) -> None:
    """The credentials path builds a working client (the test registry has auth off, so any user passes)."""
    client = make_client(schema_registry_url, "ingest:secret")
    try:
        assert register_schemas(client, {"miniticker": topics["miniticker"]})["miniticker"].schema_id > 0
    finally:
        client.close()
