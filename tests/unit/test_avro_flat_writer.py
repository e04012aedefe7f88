"""The flat-record fast path must write exactly fastavro's bytes, and leave to fastavro what it cannot write."""

from __future__ import annotations

import datetime as dt
from io import BytesIO

import fastavro
import pytest

from ingest.avro import Encoder, flat_writer, parsed_schema

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
