"""The one record path against golden records from the real capture ../shared/data/binance-captures/ticker24hr.json
(GET /api/v3/ticker/24hr, 2,519 entries, 2024-03-10).

The capture cannot be copied into the project (its source has no licence), so the golden file holds, per
kind and source, the record count and the SHA-256 of the Confluent-framed Avro bytes the worker produces (schema
id 1, fixed ingest time and connection): no value of the capture is copied. It was made once by

    INGEST_WRITE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_golden_records.py

and checked against the two-path code of commit b0f1817 (its ``parse_frame``/``snapshot_records`` and
``Encoder.encode`` give the same four digests) and against fastavro (below). It must only change with
a deliberate change of the schemas or of what a ticker means. The REST entries are also replayed as stream
frames (``!ticker@arr``/``!miniTicker@arr`` arrays), which take the msgspec whole-frame decoder, and one bad
ticker per frame makes the same frame go item by item: all three must give the golden bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import orjson
import pytest

from ingest.avro import Encoder, parsed_schema
from ingest.binance import events

CAPTURE = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance-captures" / "ticker24hr.json"
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden-ticker24hr-records.json"
NOW_US = 1_710_038_821_123_456
STREAMS = {"miniticker": "!miniTicker@arr", "ticker": "!ticker@arr"}


def entries() -> list[dict]:
    if not CAPTURE.exists():
        pytest.skip(f"real capture {CAPTURE} not present (see ../shared/data/binance-captures/SOURCES.md)")
    return json.loads(CAPTURE.read_text())


def digest(batches: list[events.Batch], kind: str, fastavro: bool = False) -> dict:
    encoder = Encoder(parsed_schema(kind), 1)
    values = []
    for batch in batches:
        if batch.kind != kind:
            continue
        if fastavro:
            values += [encoder.encode(record.value) for record in batch.records()]
        else:
            values += encoder.encode_tickers(batch.items, batch.frame_fields())
    return {"records": len(values), "sha256": hashlib.sha256(b"".join(values)).hexdigest()}


def stream_frame(batches: list[events.Batch], kind: str, bad: bool = False) -> bytes:
    """The snapshot's records as Binance would push them in an array (letters, event type, event time)."""
    letters = {name: letter for letter, name in events._SPEC[kind][0] + events._SPEC[kind][1]}
    items = [{"e": events.KIND_EVENT[kind], "E": r.event_time_ms, "s": r.symbol} |
             {letters[name]: r.value[name] for name in letters} for b in batches if b.kind == kind for r in b.records()]
    if bad:
        items.insert(len(items) // 2, dict(items[0], s="BAD", c="1e5"))
    return orjson.dumps({"stream": STREAMS[kind], "data": items})


def compute() -> dict:
    batches, rejects = events.snapshot_records(entries(), kinds={"miniticker", "ticker"}, ingest_time_us=NOW_US)
    assert rejects == []
    out = {}
    for kind in STREAMS:
        out[f"{kind} rest_snapshot"] = digest(batches, kind)
        result = events.parse_frame(stream_frame(batches, kind), default_stream="", connection_id="c-1",
                                    ingest_time_us=NOW_US, max_frame_bytes=1 << 30)
        assert result.rejects == []
        out[f"{kind} websocket"] = digest(result.batches, kind)
    return out


def test_records_of_the_real_capture_are_the_golden_ones() -> None:
    got = compute()
    if os.environ.get("INGEST_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    assert got == json.loads(GOLDEN.read_text())


def test_fastavro_and_the_item_by_item_decoder_give_the_golden_bytes() -> None:
    golden = json.loads(GOLDEN.read_text())
    batches, _ = events.snapshot_records(entries(), kinds={"miniticker", "ticker"}, ingest_time_us=NOW_US)
    for kind in STREAMS:
        assert digest(batches, kind, fastavro=True) == golden[f"{kind} rest_snapshot"]
        result = events.parse_frame(stream_frame(batches, kind, bad=True), default_stream="", connection_id="c-1",
                                    ingest_time_us=NOW_US, max_frame_bytes=1 << 30)
        assert [(r.reason, r.symbol) for r in result.rejects] == [("invalid_decimal", "BAD")]
        assert len(result.batches) == 1  # decoded item by item: still one batch of the good records
        assert digest(result.batches, kind) == golden[f"{kind} websocket"]
