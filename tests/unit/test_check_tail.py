"""Units of `ingest check` (how lines add up to an exit code) and `ingest tail` (what a record prints as).
The commands themselves run against real servers in tests/integration/test_check.py and test_tail.py."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import orjson
import pytest

from ingest.avro import Encoder, parsed_schema
from ingest.check import Report
from ingest.tail import JsonPrinter, TablePrinter, record


@pytest.mark.parametrize(("lines", "code"), [
    ([("ok", False)], 0),
    ([("ok", False), ("warn", False)], 0),
    ([("FAIL", False), ("warn", False)], 1),
    ([("FAIL", False), ("FAIL", True)], 2),  # a configuration error wins: run would refuse it outright
])
def test_exit_code_from_lines(lines, code):
    out = io.StringIO()
    report = Report(out)
    for status, config in lines:
        if status == "ok":
            report.ok("x", "y")
        elif status == "warn":
            report.warn("x", "y")
        else:
            report.fail("x", "y", config=config)
    assert report.exit_code == code
    report.summary()
    last = out.getvalue().splitlines()[-1]
    assert last.endswith(f"(exit {code})") if code else last.startswith("check: the worker would start")


def test_report_lines_are_aligned_status_first():
    out = io.StringIO()
    report = Report(out)
    report.ok("kafka", "up")
    report.fail("registry", "down")
    report.detail("btcusdt@ticker")
    assert out.getvalue().splitlines() == ["ok    kafka: up", "FAIL  registry: down", "      btcusdt@ticker"]


class FakeMessage:
    """The accessors of confluent_kafka.Message that record() uses (a unit test: no broker)."""

    def __init__(self, value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> None:
        self._value, self._headers = value, headers

    def topic(self) -> str:
        return "p.miniticker"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return 7

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_764_460_800_000

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def value(self) -> bytes | None:
        return self._value


class SchemaById:
    """Stands in for the registry-backed Decoder: one known schema id."""

    def __init__(self, schema_id: int) -> None:
        self.encoder = Encoder(parsed_schema("miniticker"), schema_id)

    def decode(self, data: bytes):
        import fastavro

        if int.from_bytes(data[1:5], "big") != self.encoder.schema_id:
            raise ValueError("unknown schema id")
        return self.encoder.schema_id, fastavro.schemaless_reader(io.BytesIO(data[5:]), parsed_schema("miniticker"),
                                                                  None)


VALUE = {"event_type": "24hrMiniTicker", "event_time": 1_764_460_800_000, "symbol": "BTCUSDT",
         "close_price": "91234.56000000", "open_price": "90000.00000000", "high_price": "92000.00000000",
         "low_price": "89000.00000000", "base_volume": "1234.50000000", "quote_volume": "112345678.90000000",
         "ingest_time": 1_764_460_800_000_123, "source": "websocket", "stream": "!miniTicker@arr",
         "connection_id": None}


def test_record_decodes_framed_avro_and_prints_iso_times():
    decoder = SchemaById(5)
    rec = record(FakeMessage(decoder.encoder.encode(VALUE)), "BTCUSDT", decoder)
    out = io.StringIO()
    JsonPrinter(out).write(rec)
    printed = orjson.loads(out.getvalue())
    assert printed["schema_id"] == 5 and printed["key"] == "BTCUSDT"
    assert (printed["partition"], printed["offset"]) == (2, 7)
    assert printed["value"]["close_price"] == "91234.56000000"
    assert printed["value"]["event_time"] == "2025-11-30T00:00:00Z"
    assert printed["value"]["ingest_time"] == "2025-11-30T00:00:00.000123Z"
    assert "payload" not in printed and "headers" not in printed


def test_dead_letter_and_undecodable_values_print_raw_with_headers():
    decoder = SchemaById(5)
    dead = record(FakeMessage(b'{"bad": json', [("reason", b"invalid_json"), ("detail", b"\xff")]), "s", decoder)
    assert dead["payload"] == '{"bad": json' and dead["headers"] == {"reason": "invalid_json", "detail": "\\xff"}
    assert "error" not in dead and "value" not in dead
    other_id = Encoder(parsed_schema("miniticker"), 6).encode(VALUE)
    broken = record(FakeMessage(other_id), "BTCUSDT", decoder)
    assert broken["error"].startswith("not decodable: ValueError: unknown schema id")
    assert broken["payload"].endswith("!miniTicker@arr\x00")  # the raw bytes, shown rather than dropped


def test_table_keeps_columns_aligned():
    decoder = SchemaById(5)
    out = io.StringIO()
    table = TablePrinter(out)
    for close in ("1.5", "91234.56000000"):
        table.write(record(FakeMessage(decoder.encoder.encode({**VALUE, "close_price": close})), "BTCUSDT", decoder))
    header, first, second = out.getvalue().splitlines()
    column = header.index("close_price")
    assert first[column:].startswith("1.5 ") and second[column:].startswith("91234.56000000 ")
    assert first.startswith(datetime(2025, 11, 30, tzinfo=UTC).strftime("%H:%M:%S.000"))
