"""Encoding: exact Confluent framing, fastavro round trips, lossless decimals; registry logic with a fake client."""

from __future__ import annotations

import argparse
import json
import logging
from decimal import Decimal
from io import BytesIO
from typing import Any

import fastavro
import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryError

from ingest import avro, schemas_cli
from ingest.avro import (
    SCHEMA_DIR,
    SCHEMA_FILES,
    Encoder,
    check_compatibility,
    is_retryable,
    load_schema,
    parsed_schema,
    register_schemas,
    retry_with_backoff,
    split_framing,
    subject_for,
)
from ingest.binance.events import parse_frame, snapshot_records, symbol_info_value
from ingest.config import ConfigError

NOW_US = 1_710_038_821_123_456
MINI = {"e": "24hrMiniTicker", "E": 1234567890123, "s": "LUNCUSDT", "c": "0.00012345", "o": "0.00011000",
        "h": "0.00013000", "l": "0.00010000", "v": "284227394804.05000000", "q": "35123456.78"}
REST = {"symbol": "ETHBTC", "priceChange": "-0.00041000", "priceChangePercent": "-0.713",
        "weightedAvgPrice": "0.05731207", "prevClosePrice": "0.05749000", "lastPrice": "0.05708000",
        "lastQty": "3.12500000", "bidPrice": "0.05707000", "bidQty": "12.50000000", "askPrice": "0.05708000",
        "askQty": "21.75000000", "openPrice": "0.05749500", "highPrice": "0.05790000", "lowPrice": "0.05690000",
        "volume": "18000.25000000", "quoteVolume": "1031.51234567", "openTime": 1709952000000,
        "closeTime": 1710038400000, "firstId": -1, "lastId": -1, "count": 0}


def mini_record(**over: Any) -> dict:
    (record,) = parse_frame(orjson.dumps([dict(MINI, **over)]), default_stream="!miniTicker@arr",
                            connection_id="c-7", ingest_time_us=NOW_US, max_frame_bytes=1 << 20).records
    return record.value


def ticker_record() -> dict:
    batches, _ = snapshot_records([REST], kinds={"ticker"}, ingest_time_us=NOW_US)
    return batches[0].records()[0].value


def fastavro_decode(data: bytes, kind: str) -> dict:
    _schema_id, body = split_framing(data)
    return fastavro.schemaless_reader(BytesIO(body), parsed_schema(kind), None)


def test_framing_is_magic_byte_then_big_endian_schema_id_then_the_avro_body() -> None:
    value = mini_record()
    data = Encoder(parsed_schema("miniticker"), 0x01020304).encode(value)
    body = BytesIO()
    fastavro.schemaless_writer(body, parsed_schema("miniticker"), value)
    assert data[:5] == b"\x00\x01\x02\x03\x04"
    assert data[5:] == body.getvalue()
    assert split_framing(data) == (0x01020304, body.getvalue())
    assert Encoder(load_schema("miniticker"), 300).prefix == b"\x00\x00\x00\x01\x2c"  # unparsed schema accepted


@pytest.mark.parametrize("bad", [b"", b"\x00\x00\x00\x01", b"\x01\x00\x00\x00\x01body"])
def test_split_framing_refuses_what_is_not_confluent_framed(bad: bytes) -> None:
    with pytest.raises(ValueError, match="magic byte"):
        split_framing(bad)


def test_schema_id_must_fit_four_signed_bytes() -> None:
    with pytest.raises(ValueError):
        Encoder(parsed_schema("ticker"), 2**31)


def test_reused_buffer_does_not_leak_between_records() -> None:
    encoder = Encoder(parsed_schema("miniticker"), 1)
    long_one = encoder.encode(mini_record(s="A" * 50))
    short_one = encoder.encode(mini_record(s="B"))
    assert fastavro_decode(short_one, "miniticker")["symbol"] == "B"
    assert fastavro_decode(long_one, "miniticker")["symbol"] == "A" * 50
    assert [encoder.encode(v) for v in (mini_record(s="A" * 50), mini_record(s="B"))] == [long_one, short_one]


def test_miniticker_round_trip_keeps_decimal_strings_exactly() -> None:
    value = mini_record()
    back = fastavro_decode(Encoder(parsed_schema("miniticker"), 5).encode(value), "miniticker")
    assert back["base_volume"] == "284227394804.05000000" and back["close_price"] == "0.00012345"
    assert back["event_time"].timestamp() * 1000 == value["event_time"]  # timestamp-millis logical type
    assert {k: v for k, v in back.items() if k not in ("event_time", "ingest_time")} == {
        k: v for k, v in value.items() if k not in ("event_time", "ingest_time")}
    assert back["source"] == "websocket" and back["connection_id"] == "c-7"


def test_ticker_snapshot_round_trip() -> None:
    value = ticker_record()
    back = fastavro_decode(Encoder(parsed_schema("ticker"), 6).encode(value), "ticker")
    assert back["price_change_percent"] == "-0.713" and back["first_trade_id"] == -1
    assert back["source"] == "rest_snapshot" and back["connection_id"] is None
    assert back["stream"] == "rest:ticker/24hr"


def test_symbol_info_round_trip() -> None:
    entry = {"symbol": "ETHBTC", "status": "BREAK", "baseAsset": "ETH", "baseAssetPrecision": 8,
             "quoteAsset": "BTC", "quotePrecision": 8, "quoteAssetPrecision": 8, "orderTypes": ["LIMIT"],
             "icebergAllowed": False, "filters": [{"filterType": "ICEBERG_PARTS", "limit": 10}],
             "permissions": ["SPOT"], "permissionSets": [["SPOT", "MARGIN"]], "newThing": {"a": 1}}
    value = symbol_info_value(entry, first_seen_ms=1633000000000, last_seen_ms=1681000000000,
                              ingest_time_us=NOW_US)
    back = fastavro_decode(Encoder(parsed_schema("symbols"), 7).encode(value), "symbols")
    assert back["filters"] == [{"filter_type": "ICEBERG_PARTS", "params": {"limit": "10"}}]
    assert back["other_fields"] == {"newThing": '{"a":1}'} and back["flags"] == {"icebergAllowed": False}
    assert back["permission_sets"] == [["SPOT", "MARGIN"]] and back["base_commission_precision"] is None


@pytest.mark.parametrize("text", ["0.00000001", "-0.00000001", "9" * 30 + ".99999999", "284227394804.05000000",
                                  "-0.713", "5", "0"])
def test_every_accepted_decimal_string_fits_decimal_38_8_exactly(text: str) -> None:
    """The promise in the schema docs: what the parser accepts converts to DECIMAL(38,8) with no loss."""
    value = mini_record(c=text)
    decimal_schema = fastavro.parse_schema({"type": "record", "name": "D", "fields": [
        {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 8}}]})
    buf = BytesIO()
    fastavro.schemaless_writer(buf, decimal_schema, {"d": Decimal(value["close_price"])})  # raises if it lost digits
    back = fastavro.schemaless_reader(BytesIO(buf.getvalue()), decimal_schema, None)["d"]
    assert back == Decimal(text)


@pytest.mark.parametrize(("text", "reason"), [("0.000000001", "decimal_out_of_range"),
                                              ("1" * 31, "decimal_out_of_range"), ("1e-9", "invalid_decimal")])
def test_values_that_would_lose_precision_never_reach_the_encoder(text: str, reason: str) -> None:
    result = parse_frame(orjson.dumps([dict(MINI, c=text)]), default_stream="s", connection_id="c",
                         ingest_time_us=NOW_US, max_frame_bytes=1 << 20)
    assert result.records == [] and [r.reason for r in result.rejects] == [reason]
    # Our check is the one that matters: fastavro refuses a 9th decimal, but writes 31 integer digits at
    # scale 8 (39 digits) into a decimal(38, 8) without complaint.


def test_schema_files_document_every_field_and_share_the_namespace() -> None:
    names = {p.name for p in SCHEMA_DIR.glob("*.avsc")}
    assert names == {"MiniTicker.avsc", "Ticker.avsc", "SymbolInfo.avsc", "DeadLetter.avsc"}
    for path in SCHEMA_DIR.glob("*.avsc"):
        schema = json.loads(path.read_text())
        fastavro.parse_schema(schema)
        assert schema["namespace"] == "io.binanceingest.spot" and schema["doc"]
        for field in schema["fields"]:
            assert field.get("doc"), f"{path.name}: {field['name']} has no doc"
    mini_fields = {f["name"]: f["type"] for f in load_schema("miniticker")["fields"]}
    ticker_fields = {f["name"]: f["type"] for f in load_schema("ticker")["fields"]}
    assert all(ticker_fields[name] == t for name, t in mini_fields.items())  # one shape, one meaning
    assert "DeadLetter.avsc" not in SCHEMA_FILES.values()  # documentation only: the topic carries raw bytes


class FakeRegistry:
    """Records calls in order; answers like a Confluent-API registry."""

    def __init__(self, known: dict[str, bool] | None = None) -> None:
        self.calls: list[tuple] = []
        self.known = known or {}  # subject -> is the local schema compatible with it
        self.next_id = 40

    def get_subjects(self) -> list[str]:  # the CLI's read-only probe before anything else
        return list(self.known)

    def set_compatibility(self, subject_name: str, level: str) -> dict:
        self.calls.append(("config", subject_name, level))
        return {"compatibility": level}

    def register_schema(self, subject: str, schema: Any) -> int:
        self.calls.append(("register", subject, json.loads(schema.schema_str)["name"]))
        self.next_id += 1
        return self.next_id

    def get_versions(self, subject: str) -> list[int]:
        if subject not in self.known:
            raise SchemaRegistryError(404, 40401, "Subject not found")
        return [1]

    def test_compatibility(self, subject: str, schema: Any, version: str) -> bool:
        self.calls.append(("test", subject, version))
        return self.known[subject]

    def close(self) -> None:
        self.calls.append(("close",))


TOPICS = {"miniticker": "binance.spot.miniticker", "ticker": "binance.spot.ticker", "symbols": "binance.spot.symbols"}


def test_register_sets_backward_before_registering_under_topic_value() -> None:
    registry = FakeRegistry()
    encoders = register_schemas(registry, TOPICS)  # type: ignore[arg-type]
    assert registry.calls == [
        ("config", "binance.spot.miniticker-value", "BACKWARD"), ("register", "binance.spot.miniticker-value",
                                                                   "MiniTicker"),
        ("config", "binance.spot.ticker-value", "BACKWARD"), ("register", "binance.spot.ticker-value", "Ticker"),
        ("config", "binance.spot.symbols-value", "BACKWARD"), ("register", "binance.spot.symbols-value",
                                                                "SymbolInfo")]
    assert {k: e.schema_id for k, e in encoders.items()} == {"miniticker": 41, "ticker": 42, "symbols": 43}
    assert encoders["ticker"].schema is parsed_schema("ticker")


def test_check_reports_new_compatible_and_incompatible_subjects() -> None:
    registry = FakeRegistry({"binance.spot.ticker-value": True, "binance.spot.symbols-value": False})
    results = check_compatibility(registry, TOPICS)  # type: ignore[arg-type]
    assert [(r.subject, r.status, r.ok) for r in results] == [
        ("binance.spot.miniticker-value", "new", True), ("binance.spot.ticker-value", "compatible", True),
        ("binance.spot.symbols-value", "incompatible", False)]
    assert ("test", "binance.spot.ticker-value", "latest") in registry.calls


def cli_args(action: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    schemas_cli.add_arguments(parser)
    return parser.parse_args([action, "--schema-registry-url", "http://registry.invalid/apis/ccompat/v7",
                              "--topic-prefix", "binance.spot"])


def test_cli_check_exit_code_names_the_incompatible_subject(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    registry = FakeRegistry({subject_for(t): True for t in TOPICS.values()} | {"binance.spot.ticker-value": False})
    monkeypatch.setattr(schemas_cli, "make_client", lambda url, user_info: registry)
    assert schemas_cli.main(cli_args("check")) == 1
    err = capsys.readouterr().err
    assert "binance.spot.ticker-value" in err and "miniticker" not in err
    registry.known["binance.spot.ticker-value"] = True
    assert schemas_cli.main(cli_args("check")) == 0


def test_cli_register_prints_ids(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(schemas_cli, "make_client", lambda url, user_info: FakeRegistry())
    assert schemas_cli.main(cli_args("register")) == 0
    assert "binance.spot.symbols-value: SymbolInfo.avsc registered, id 43" in capsys.readouterr().out


def test_cli_unreachable_registry_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli_args("check")
    args.schema_registry_url = "http://127.0.0.1:9/apis/ccompat/v7"  # discard port: nothing listens
    assert schemas_cli.main(args) == 1
    err = capsys.readouterr().err
    assert "unreachable" in err and len(err.strip().splitlines()) == 1


def test_retry_with_backoff_retries_transport_errors_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    attempts = iter([ConnectionError("refused"), SchemaRegistryError(503, 50301, "down"), None])
    sleeps: list[float] = []

    def flaky() -> str:
        exc = next(attempts)
        if exc is not None:
            raise exc
        return "registered"

    with caplog.at_level(logging.WARNING, logger=avro.__name__):
        assert retry_with_backoff(flaky, what="registering schemas", initial_s=0.5, max_s=4,
                                  sleep=sleeps.append) == "registered"
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "registering schemas failed (attempt 1)", "registering schemas failed (attempt 2)"]


def test_retry_with_backoff_does_not_retry_a_refusal() -> None:
    sleeps: list[float] = []

    def refused() -> None:
        raise SchemaRegistryError(409, 409, "incompatible")

    with pytest.raises(SchemaRegistryError):
        retry_with_backoff(refused, what="x", sleep=sleeps.append)
    assert sleeps == []


def test_retry_with_backoff_gives_up_at_the_deadline() -> None:
    sleeps: list[float] = []

    def down() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        retry_with_backoff(down, what="x", initial_s=1, max_s=1, deadline_s=0.0, sleep=sleeps.append)
    assert sleeps == []


@pytest.mark.parametrize(("exc", "expected"), [(ConnectionError(), True), (TimeoutError(), True),
                                               (SchemaRegistryError(500, 50001, "x"), True),
                                               (SchemaRegistryError(401, 40101, "x"), False),
                                               (SchemaRegistryError(409, 409, "x"), False), (ValueError(), False)])
def test_is_retryable(exc: BaseException, expected: bool) -> None:
    assert is_retryable(exc) is expected


def test_retry_with_backoff_async_runs_the_call_in_a_thread_and_retries() -> None:
    import asyncio
    import threading

    loop_thread = threading.get_ident()
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> int:
        calls.append(threading.get_ident())
        if len(calls) < 3:
            raise ConnectionError("refused")
        return 7

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    assert asyncio.run(avro.retry_with_backoff_async(flaky, what="x", sleep=fake_sleep)) == 7
    assert len(calls) == 3 and len(sleeps) == 2 and loop_thread not in calls


def test_make_client_accepts_basic_auth_user_info() -> None:
    """A typo in the client's config keys would raise here (the client rejects unknown properties)."""
    client = avro.make_client("http://127.0.0.1:9/apis/ccompat/v7", "user:secret")
    client.close()
    with pytest.raises(ConfigError, match="user:password"):
        avro.make_client("http://127.0.0.1:9/apis/ccompat/v7", "no-colon")
