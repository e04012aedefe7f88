"""Avro decimal vs string for Binance prices and volumes: throughput and size, side by side.

Why: DESIGN §5 lets us keep decimals either as Avro ``decimal`` (bytes, scale 8) or as the exact string
Binance sent. This measures what each costs on the hot path for a ~2,000-ticker frame: the conversion the
parser must do (string -> ``Decimal`` for the decimal variant), fastavro encoding, fastavro decoding, and
the encoded size per record. Values are real: they come from the recorded GET /api/v3/ticker/24hr
response in ../shared/data/binance-captures (read in place, never copied); without it a synthetic frame
with the same shapes is used and the output says so.

Run: ``.venv/bin/python bench/bench_decimal.py [--repeat N] [--records N]``
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from collections.abc import Callable
from decimal import Decimal
from io import BytesIO
from pathlib import Path

import fastavro
import orjson

from ingest.avro import load_schema
from ingest.binance.events import MINI_DECIMALS, TICKER_DECIMALS, TICKER_INTEGERS, parse_frame, snapshot_records

CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance-captures" / "ticker24hr.json"
DECIMAL_TYPE = {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 8}


def decimal_variant(schema: dict) -> dict:
    """The same record schema with every decimal-string field turned into Avro decimal(38, 8)."""
    out = copy.deepcopy(schema)
    out["name"] = out["name"] + "Dec"
    for field in out["fields"]:
        if field["type"] == "string" and "DECIMAL(38,8)" in field.get("doc", ""):
            field["type"] = dict(DECIMAL_TYPE)
    return out


def decimal_fields(schema: dict) -> list[str]:
    return [f["name"] for f in schema["fields"] if isinstance(f["type"], dict) and f["type"].get("logicalType")
            == "decimal"]


def rest_entries(n: int, active_only: bool = False) -> tuple[list[dict], str]:
    if CAPTURE.exists():
        entries = json.loads(CAPTURE.read_text())
        origin = f"real values from {CAPTURE.name} ({len(entries)} entries)"
        if active_only:  # drop delisted symbols: their all-zero values compress unrealistically well
            entries = [e for e in entries if e["count"] > 0]
            origin = f"real values from {CAPTURE.name} ({len(entries)} entries with trades, repeated)"
    else:
        rng = random.Random(7)
        entries = []
        for i in range(n):
            price = f"{rng.uniform(0.0001, 70000):.8f}"
            entries.append({"symbol": f"SYM{i}USDT", "priceChange": f"{-rng.uniform(0, 9):.8f}",
                            "priceChangePercent": f"{rng.uniform(-9, 9):.3f}", "weightedAvgPrice": price,
                            "prevClosePrice": price, "lastPrice": price, "lastQty": "1.20000000",
                            "bidPrice": price, "bidQty": "3.00000000", "askPrice": price, "askQty": "4.00000000",
                            "openPrice": price, "highPrice": price, "lowPrice": price,
                            "volume": f"{rng.uniform(0, 1e9):.8f}", "quoteVolume": f"{rng.uniform(0, 1e12):.8f}",
                            "openTime": 1709952420116, "closeTime": 1710038820116, "firstId": 1, "lastId": 9,
                            "count": 9})
        origin = "SYNTHETIC values (capture folder not found)"
    while len(entries) < n:
        entries = entries + entries
    return entries[:n], origin


def stream_frame(kind: str, values: list[dict]) -> bytes:
    """The same tickers as a WebSocket array frame, keys as Binance sends them."""
    spec = MINI_DECIMALS if kind == "miniticker" else TICKER_DECIMALS + TICKER_INTEGERS
    event = "24hrMiniTicker" if kind == "miniticker" else "24hrTicker"
    return orjson.dumps([{"e": event, "E": v["event_time"], "s": v["symbol"], **{k: v[n] for k, n in spec}}
                         for v in values])


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(kind: str, records: int, repeat: int, active_only: bool) -> None:
    schema_str = load_schema(kind)
    parsed_str = fastavro.parse_schema(schema_str)
    dec_schema = decimal_variant(schema_str)
    parsed_dec = fastavro.parse_schema(dec_schema)
    fields = decimal_fields(dec_schema)
    entries, origin = rest_entries(records, active_only)
    batches, rejects = snapshot_records(entries, kinds={kind}, ingest_time_us=1_710_038_820_000_000)
    assert not rejects, rejects[:3]
    values = [r.value for batch in batches for r in batch.records()]
    frame = stream_frame(kind, values)
    t_parse = best_of(repeat, lambda: parse_frame(frame, default_stream="!x@arr", connection_id="c",
                                                    ingest_time_us=0, max_frame_bytes=1 << 30))

    def to_decimal() -> list[dict]:
        out = []
        for v in values:
            d = dict(v)
            for name in fields:
                d[name] = Decimal(d[name])
            out.append(d)
        return out

    dec_values = to_decimal()
    buf = BytesIO()

    def encode(parsed: dict, vals: list[dict]) -> list[bytes]:
        out = []
        for v in vals:
            buf.seek(0)
            buf.truncate()
            fastavro.schemaless_writer(buf, parsed, v)
            out.append(buf.getvalue())
        return out

    def decode(parsed: dict, blobs: list[bytes]) -> None:
        for b in blobs:
            fastavro.schemaless_reader(BytesIO(b), parsed, None)

    blobs_str = encode(parsed_str, values)
    blobs_dec = encode(parsed_dec, dec_values)
    # Lossless check: every decoded decimal equals the string's value.
    for b, v in zip(blobs_dec, values, strict=True):
        back = fastavro.schemaless_reader(BytesIO(b), parsed_dec, None)
        assert all(back[f] == Decimal(v[f]) for f in fields)

    t_conv = best_of(repeat, to_decimal)
    t_enc_str = best_of(repeat, lambda: encode(parsed_str, values))
    t_enc_dec = best_of(repeat, lambda: encode(parsed_dec, dec_values))
    t_dec_str = best_of(repeat, lambda: decode(parsed_str, blobs_str))
    t_dec_dec = best_of(repeat, lambda: decode(parsed_dec, blobs_dec))
    size_str = sum(map(len, blobs_str)) / len(blobs_str)
    size_dec = sum(map(len, blobs_dec)) / len(blobs_dec)
    import zlib

    z_str = len(zlib.compress(b"".join(blobs_str), 6)) / len(blobs_str)
    z_dec = len(zlib.compress(b"".join(blobs_dec), 6)) / len(blobs_dec)

    ms = 1000.0
    print(f"\n{kind}: {records} records per frame, {len(fields)} decimal fields per record; {origin}; "
          f"best of {repeat}; stream frame {len(frame) / 1024:.0f} KiB, parse_frame {t_parse * 1000:.2f} ms "
          f"(shared by both variants)")
    print(f"{'':34}{'string':>12}{'decimal(38,8)':>16}{'decimal/string':>16}")
    rows = [
        ("str -> Decimal conversion (ms)", 0.0, t_conv * ms),
        ("encode, fastavro (ms)", t_enc_str * ms, t_enc_dec * ms),
        ("convert + encode (ms)", t_enc_str * ms, (t_conv + t_enc_dec) * ms),
        ("decode, fastavro (ms)", t_dec_str * ms, t_dec_dec * ms),
    ]
    for label, a, b in rows:
        ratio = f"{b / a:.2f}x" if a else "-"
        print(f"{label:34}{a:12.2f}{b:16.2f}{ratio:>16}")
    enc_rate_str = records / t_enc_str
    enc_rate_dec = records / (t_conv + t_enc_dec)
    print(f"{'convert + encode (records/s)':34}{enc_rate_str:12,.0f}{enc_rate_dec:16,.0f}"
          f"{enc_rate_dec / enc_rate_str:15.2f}x")
    print(f"{'decode (records/s)':34}{records / t_dec_str:12,.0f}{records / t_dec_dec:16,.0f}"
          f"{t_dec_str / t_dec_dec:15.2f}x")
    print(f"{'bytes per record (Avro body)':34}{size_str:12.1f}{size_dec:16.1f}{size_dec / size_str:15.2f}x")
    print(f"{'bytes per record, zlib frame':34}{z_str:12.1f}{z_dec:16.1f}{z_dec / z_str:15.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--active-only", action="store_true", help="only symbols that traded (count > 0)")
    args = parser.parse_args()
    for kind in ("miniticker", "ticker"):
        run(kind, args.records, args.repeat, args.active_only)


if __name__ == "__main__":
    main()
