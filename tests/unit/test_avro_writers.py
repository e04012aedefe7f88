"""The generated ticker writers (ingest/avro_writers.py) are current and write exactly fastavro's bytes."""

from __future__ import annotations

import subprocess
import sys
from io import BytesIO
from pathlib import Path

import fastavro
import msgspec
import pytest

from ingest.avro import Encoder, parsed_schema
from ingest.binance import events

REPO = Path(__file__).resolve().parents[2]
SHARED = {"ingest_time": 1_700_000_000_123_456, "source": "websocket", "stream": "!ticker@arr",
          "connection_id": "c-1"}


def test_the_checked_in_module_is_what_the_generator_writes() -> None:
    """Stale after a schema or struct change: run `.venv/bin/python scripts/gen_avro_writers.py`."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_avro_writers.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_struct_attributes_and_frame_fields_are_the_avro_fields() -> None:
    for kind, struct in events.TYPES.items():
        names = [f["name"] for f in parsed_schema(kind)["fields"]]
        assert names == list(struct.__struct_fields__) + list(events.FRAME_FIELDS)


def test_the_ticker_encoders_use_the_generated_writers() -> None:
    """The fastavro fallback gives the same bytes, so without this the byte tests below pass either way."""
    assert Encoder(parsed_schema("ticker"), 7).generated and Encoder(parsed_schema("miniticker"), 7).generated
    assert not Encoder(parsed_schema("symbols"), 7).generated


def fastavro_bytes(kind: str, value: dict) -> bytes:
    buf = BytesIO()
    buf.write(b"\x00\x00\x00\x00\x07")
    fastavro.schemaless_writer(buf, parsed_schema(kind), value)
    return buf.getvalue()


def ticker(**changes: object) -> events.Ticker:
    value = {"e": "24hrTicker", "E": 1_700_000_000_123, "s": "BTCUSDT", "p": "-12.50000000", "P": "-0.031",
             "w": "40000.1", "x": "40012.5", "c": "40000.00000000", "Q": "0.001", "b": "39999.99", "B": "1.5",
             "a": "40000.01", "A": "2", "o": "40012.5", "h": "41000", "l": "39000", "v": "1234.5678",
             "q": "49382716.12345678", "O": 1_699_913_600_123, "C": 1_700_000_000_123, "F": 0,
             "L": 3_000_000_000, "n": -1}
    value.update(changes)
    return msgspec.json.decode(msgspec.json.encode(value), type=events.Ticker)


CASES = [
    ({}, {}),
    ({}, {"connection_id": None, "source": "rest_snapshot"}),
    ({}, {"stream": "x" * 5000, "connection_id": "ü" * 70}),
    ({"F": -(1 << 63), "L": (1 << 63) - 1, "n": 63}, {}),
    ({"n": 64, "F": -64, "L": -65, "O": -1, "C": 0}, {}),
    ({"s": "Ünïcødé€" * 20}, {}),
    ({"c": "-" + "9" * 30 + "." + "9" * 8}, {}),
]


@pytest.mark.parametrize(("changes", "shared"), CASES)
def test_ticker_bytes_equal_fastavro(changes: dict, shared: dict) -> None:
    item = ticker(**changes)
    frame = SHARED | shared
    (data,) = Encoder(parsed_schema("ticker"), 7).encode_tickers([item], frame)
    assert data == fastavro_bytes("ticker", events.avro_value(item, frame))


def test_mini_ticker_bytes_equal_fastavro_and_caches_do_not_leak_between_records() -> None:
    items = [events.MiniTicker("24hrMiniTicker", 1_700_000_000_000 + i % 7, f"S{i % 9000}", "1.5", "2",
                               str(i), "0.00000001", "1", "99") for i in range(20_000)]
    values = Encoder(parsed_schema("miniticker"), 7).encode_tickers(items, SHARED)
    for item, data in zip(items[::97], values[::97], strict=True):
        assert data == fastavro_bytes("miniticker", events.avro_value(item, SHARED))


def test_a_schema_other_than_the_files_goes_through_fastavro() -> None:
    schema = dict(parsed_schema("miniticker"), fields=parsed_schema("miniticker")["fields"][:-1])
    encoder = Encoder(fastavro.parse_schema({k: v for k, v in schema.items() if not k.startswith("__")}), 7)
    item = events.MiniTicker("24hrMiniTicker", 1, "BTCUSDT", "1", "1", "1", "1", "1", "1")
    shared = {k: v for k, v in SHARED.items() if k != "connection_id"}
    assert not encoder.generated
    (data,) = encoder.encode_tickers([item], shared)
    assert data == encoder.encode(events.avro_value(item, shared))
