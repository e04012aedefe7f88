"""The flat-record fast path must write exactly fastavro's bytes, and leave to fastavro what it cannot write."""

from __future__ import annotations

import datetime as dt
from io import BytesIO

import fastavro
import msgspec
import pytest

from ingest.avro import Encoder, StructWriter, flat_writer, parsed_schema
from ingest.binance import events

PREFIX = b"\x00\x00\x00\x00\x07"


def fastavro_bytes(schema: dict, value: dict) -> bytes:
    buf = BytesIO()
    buf.write(PREFIX)
    fastavro.schemaless_writer(buf, schema, value)
    return buf.getvalue()


def ticker(**changes: object) -> dict:
    value = {"event_type": "24hrTicker", "event_time": 1_700_000_000_123, "symbol": "BTCUSDT",
             "price_change": "-12.50000000", "price_change_percent": "-0.031", "weighted_avg_price": "40000.1",
             "first_trade_price": "40012.5", "close_price": "40000.00000000", "last_quantity": "0.001",
             "best_bid_price": "39999.99", "best_bid_qty": "1.5", "best_ask_price": "40000.01",
             "best_ask_qty": "2", "open_price": "40012.5", "high_price": "41000", "low_price": "39000",
             "base_volume": "1234.5678", "quote_volume": "49382716.12345678",
             "stats_open_time": 1_699_913_600_123, "stats_close_time": 1_700_000_000_123,
             "first_trade_id": 0, "last_trade_id": 3_000_000_000, "trade_count": -1,
             "ingest_time": 1_700_000_000_123_456, "source": "websocket", "stream": "!ticker@arr",
             "connection_id": "c-1"}
    value.update(changes)
    return value


FAST_PATH_VALUES = [  # what the fast path writes itself
    {},
    {"connection_id": None, "source": "rest_snapshot"},
    {"stream": "x" * 63, "connection_id": ""},
    {"first_trade_id": -(1 << 63), "last_trade_id": (1 << 63) - 1, "trade_count": 63},
    {"trade_count": 64, "first_trade_id": -64, "last_trade_id": -65},
    {"symbol": ""},
]
FALLBACK_VALUES = [  # what it leaves to fastavro
    {"symbol": "Ünïcødé€"},
    {"connection_id": "ü"},
    {"stream": "x" * 64},  # a length that needs a two-byte varint
    {"connection_id": "y" * 5000},
]


@pytest.mark.parametrize("changes", FAST_PATH_VALUES)
def test_fast_path_writes_the_same_bytes_as_fastavro(changes: dict) -> None:
    schema = parsed_schema("ticker")
    write = flat_writer(schema, PREFIX)
    assert write is not None
    value = ticker(**changes)
    assert write(value) == fastavro_bytes(schema, value)


@pytest.mark.parametrize("changes", FALLBACK_VALUES)
def test_encoder_falls_back_to_fastavro_for_what_the_fast_path_refuses(changes: dict) -> None:
    schema = parsed_schema("ticker")
    value = ticker(**changes)
    with pytest.raises((ValueError, IndexError)):
        flat_writer(schema, PREFIX)(value)  # type: ignore[misc]
    assert Encoder(schema, 7).encode(value) == fastavro_bytes(schema, value)


@pytest.mark.parametrize("changes", [
    {"trade_count": True},  # bool: fastavro writes it as 1
    {"event_time": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)},  # logical type conversion is fastavro's
])
def test_values_the_fast_path_refuses_are_encoded_by_fastavro(changes: dict) -> None:
    schema = parsed_schema("ticker")
    assert flat_writer(schema, PREFIX) is not None
    with pytest.raises((TypeError, KeyError)):
        flat_writer(schema, PREFIX)(ticker(**changes))  # type: ignore[misc]
    encoder = Encoder(schema, 7)
    assert encoder.encode(ticker(**changes)) == fastavro_bytes(schema, ticker(**changes))


@pytest.mark.parametrize("changes", [
    {"source": "carrier_pigeon"}, {"trade_count": 1 << 63}, {"symbol": 5}, {"connection_id": 3},
    {"close_price": "\ud800"},
])
def test_bad_values_raise_what_fastavro_raises(changes: dict) -> None:
    schema = parsed_schema("ticker")
    with pytest.raises(Exception) as expected:
        fastavro_bytes(schema, ticker(**changes))
    with pytest.raises(expected.type):
        Encoder(schema, 7).encode(ticker(**changes))


def test_missing_optional_field_is_written_as_null_like_fastavro() -> None:
    schema = parsed_schema("ticker")
    value = ticker()
    del value["connection_id"]
    assert Encoder(schema, 7).encode(value) == fastavro_bytes(schema, value)


def test_schemas_it_cannot_write_use_fastavro() -> None:
    assert flat_writer(parsed_schema("symbols"), PREFIX) is None
    assert flat_writer(parsed_schema("miniticker"), PREFIX) is not None


# --- StructWriter: typed structs (the pipeline's fast path) -> the same bytes as fastavro ---------------------

def struct_writer(kind: str) -> StructWriter:
    return StructWriter(parsed_schema(kind), PREFIX, events.FAST_TYPES[kind].__struct_fields__,
                        {"event_type": events.KIND_EVENT[kind]}, events.FAST_DECIMALS[kind], events.DECIMALS_OK[kind])


FRAME_FIELDS = ("ingest_time", "source", "stream", "connection_id")


@pytest.mark.parametrize("changes", [
    {}, {"connection_id": None, "source": "rest_snapshot"}, {"symbol": "币安人生USDT"}, {"symbol": "S" * 200},
    {"stream": "é" * 70}, {"event_time": 0, "first_trade_id": -(2**63), "last_trade_id": 2**63 - 1,
                           "trade_count": -1, "stats_open_time": -1, "stats_close_time": 2**63 - 1},
    {"price_change": "-" + "9" * 30 + "." + "9" * 8, "quote_volume": "0"},
])
def test_struct_writer_writes_fastavro_bytes(changes: dict) -> None:
    value = ticker(**changes)
    writer = struct_writer("ticker")
    struct = events.FastTicker(**{k: v for k, v in value.items() if k not in FRAME_FIELDS})
    tail = writer.tail({k: value[k] for k in FRAME_FIELDS})
    for _ in range(2):  # the second time from the symbol and time caches
        assert writer.write(struct, tail) == fastavro_bytes(parsed_schema("ticker"), value)


def test_struct_writer_for_mini_tickers_and_every_symbol_cached_correctly() -> None:
    writer = struct_writer("miniticker")
    schema = parsed_schema("miniticker")
    tail = writer.tail({"ingest_time": 5, "source": "websocket", "stream": "!miniTicker@arr", "connection_id": "c"})
    for i in range(10_000):  # more than the caches hold: they are cleared and refilled
        struct = events.FastMiniTicker("24hrMiniTicker", 1_700_000_000_000 + i % 7, f"S{i % 9000}", "1.5", "2",
                                       "3", "4", "5.00000001", "-6")
        value = {**msgspec.structs.asdict(struct), "ingest_time": 5, "source": "websocket",
                 "stream": "!miniTicker@arr", "connection_id": "c"}
        assert writer.write(struct, tail) == fastavro_bytes(schema, value)


@pytest.mark.parametrize("decimal", ["1.123456789", "1" * 31, "1e5", "", "\uff11", "1|2", "1\n", " 1"])
def test_struct_writer_refuses_what_the_decimal_check_refuses(decimal: str) -> None:
    struct = events.FastMiniTicker("24hrMiniTicker", 1, "BTCUSDT", "1", "1", decimal, "1", "1", "1")
    writer = struct_writer("miniticker")
    with pytest.raises(ValueError, match="failed its check"):
        writer.write(struct, writer.tail({"ingest_time": 1, "source": "websocket", "stream": "s",
                                          "connection_id": None}))
