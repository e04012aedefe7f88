"""The pipeline between a frame and produce(): dedupe, keys, timestamps, dead letters, accounting."""

from __future__ import annotations

import asyncio
import time
from io import BytesIO

import fastavro
import orjson

from ingest import metrics
from ingest.avro import Encoder, parsed_schema, split_framing
from ingest.binance.connection import FrameMeta
from ingest.config import Settings
from ingest.pipeline import Pipeline


class FakeSink:
    """Records produce() calls; a unit-test stand-in for KafkaSink (integration tests use real Kafka)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, int, list | None]] = []

    async def produce(self, topic, key, value, timestamp_ms, headers=None):
        self.sent.append((topic, key, value, timestamp_ms, headers))
        return True

    async def produce_many(self, topic, records, headers=None):
        for key, value, timestamp_ms in records:
            self.sent.append((topic, key, value, timestamp_ms, headers))
        return len(records)

    def poll(self):
        return 0


def mini(symbol: str, event_time: int, close: str = "1.00000000") -> dict:
    return {"e": "24hrMiniTicker", "E": event_time, "s": symbol, "c": close, "o": "0.90000000",
            "h": "1.10000000", "l": "0.80000000", "v": "1000.00000000", "q": "1000.00000000"}


def make() -> tuple[Pipeline, FakeSink]:
    settings = Settings(topic_prefix="t.spot")
    encoders = {kind: Encoder(parsed_schema(kind), i + 1) for i, kind in enumerate(("miniticker", "ticker", "symbols"))}
    sink = FakeSink()
    return Pipeline(settings, sink, encoders, ["!miniTicker@arr"]), sink


def run(coro):
    return asyncio.run(coro)


def meta() -> FrameMeta:
    return FrameMeta("c1", 1_700_000_000.0)


def test_array_frame_produces_one_keyed_record_per_symbol_with_event_time_timestamp():
    pipeline, sink = make()
    frame = orjson.dumps({"stream": "!miniTicker@arr", "data": [mini("BTCUSDT", 1000), mini("ETHUSDT", 1001)]})
    run(pipeline.on_frame(frame, meta()))
    assert [(t, k, ts) for t, k, _, ts, _ in sink.sent] == [("t.spot.miniticker", b"BTCUSDT", 1000),
                                                             ("t.spot.miniticker", b"ETHUSDT", 1001)]
    schema_id, _ = split_framing(sink.sent[0][2])
    assert schema_id == 1


def test_not_newer_event_time_is_suppressed_and_counted():
    pipeline, sink = make()
    before = metrics.DUPLICATES_SUPPRESSED._value.get()
    run(pipeline.on_frame(orjson.dumps([mini("BTCUSDT", 1000)]), meta()))
    run(pipeline.on_frame(orjson.dumps([mini("BTCUSDT", 1000), mini("BTCUSDT", 999)]), meta()))
    run(pipeline.on_frame(orjson.dumps([mini("BTCUSDT", 1001)]), meta()))
    assert [ts for *_, ts, _ in sink.sent] == [1000, 1001]
    assert metrics.DUPLICATES_SUPPRESSED._value.get() - before == 2


def test_bad_ticker_goes_to_dead_letter_and_the_rest_of_the_frame_is_produced():
    pipeline, sink = make()
    bad = mini("BADUSDT", 1000)
    bad["c"] = 1.5  # a number where Binance sends a decimal string
    run(pipeline.on_frame(orjson.dumps([mini("BTCUSDT", 1000), bad]), meta()))
    topics = [t for t, *_ in sink.sent]
    assert topics.count("t.spot.miniticker") == 1
    assert topics.count("t.spot.deadletter") == 1
    dl = next(s for s in sink.sent if s[0] == "t.spot.deadletter")
    headers = dict(dl[4])
    assert headers["reason"] == b"wrong_type"
    assert orjson.loads(dl[2])["s"] == "BADUSDT"


def test_invalid_json_frame_is_dead_lettered_with_its_raw_bytes():
    pipeline, sink = make()
    run(pipeline.on_frame(b'[{"e": "24hrMiniTicker", ', meta()))
    assert len(sink.sent) == 1
    topic, _key, value, _, headers = sink.sent[0]
    assert topic == "t.spot.deadletter" and value == b'[{"e": "24hrMiniTicker", '
    assert dict(headers)["reason"] == b"invalid_json"


def test_snapshot_older_than_stream_is_suppressed_newer_is_produced():
    pipeline, sink = make()
    run(pipeline.on_frame(orjson.dumps([mini("BTCUSDT", 5000)]), meta()))
    entries = [{"symbol": "BTCUSDT", "lastPrice": "2.00000000", "openPrice": "1.00000000", "highPrice": "2.00000000",
                "lowPrice": "1.00000000", "volume": "1.00000000", "quoteVolume": "1.00000000", "closeTime": 4000},
               {"symbol": "ETHUSDT", "lastPrice": "2.00000000", "openPrice": "1.00000000", "highPrice": "2.00000000",
                "lowPrice": "1.00000000", "volume": "1.00000000", "quoteVolume": "1.00000000", "closeTime": 4000}]
    produced = run(pipeline.on_snapshot(entries, {"miniticker"}))
    assert produced == 1
    assert [k for _, k, *_ in sink.sent] == [b"BTCUSDT", b"ETHUSDT"]


def test_produced_bytes_are_the_frames_values_as_fastavro_reads_them():
    """Whole frames (decoded at once) and frames with a bad ticker (decoded item by item) end in the same
    produce path: each value, read back by fastavro, is the ticker's fields plus the frame's, key = symbol,
    timestamp = event time; an older duplicate is dropped before encoding."""
    ticker = {"e": "24hrTicker", "E": 1_700_000_000_123, "s": "ETHBTC", "p": "-0.00041000", "P": "-0.713",
              "w": "0.05731207", "x": "0.05749000", "c": "0.05708000", "Q": "3.12500000", "b": "0.05707000",
              "B": "12.50000000", "a": "0.05709000", "A": "21.75000000", "o": "0.05749500", "h": "0.05790000",
              "l": "0.05690000", "v": "18000.25000000", "q": "1031.51234567", "O": 1_699_913_600_123,
              "C": 1_700_000_000_123, "F": 400000001, "L": 400050000, "n": 50000}
    frames = [orjson.dumps({"stream": "!miniTicker@arr", "data": [mini("BTCUSDT", 1000), mini("币安人生USDT", 1001),
                                                                 mini("BTCUSDT", 999)]}),
              orjson.dumps({"stream": "!ticker@arr", "data": [ticker, dict(ticker, s="LTCBTC", n=0),
                                                              dict(ticker, s="BAD", c="x")]})]
    pipeline, sink = make()
    for frame in frames:
        run(pipeline.on_frame(frame, meta()))
    produced = [rec for rec in sink.sent if rec[0] != "t.spot.deadletter"]
    assert [(t, k, ts) for t, k, _, ts, _ in produced] == [
        ("t.spot.miniticker", b"BTCUSDT", 1000), ("t.spot.miniticker", "币安人生USDT".encode(), 1001),
        ("t.spot.ticker", b"ETHBTC", 1_700_000_000_123), ("t.spot.ticker", b"LTCBTC", 1_700_000_000_123)]
    shared = {"ingest_time": 1_700_000_000_000_000, "source": "websocket", "connection_id": "c1"}
    first = fastavro.schemaless_reader(BytesIO(split_framing(produced[1][2])[1]), parsed_schema("miniticker"), None)
    first["event_time"] = round(first["event_time"].timestamp() * 1000)  # fastavro reads datetimes
    first["ingest_time"] = round(first["ingest_time"].timestamp() * 1_000_000)
    assert first == dict(shared, stream="!miniTicker@arr", event_type="24hrMiniTicker", event_time=1001,
                         symbol="币安人生USDT", close_price="1.00000000", open_price="0.90000000",
                         high_price="1.10000000", low_price="0.80000000", base_volume="1000.00000000",
                         quote_volume="1000.00000000")
    last = fastavro.schemaless_reader(BytesIO(split_framing(produced[3][2])[1]), parsed_schema("ticker"), None)
    assert (last["symbol"], last["trade_count"], last["quote_volume"], last["stream"]) == (
        "LTCBTC", 0, "1031.51234567", "!ticker@arr")
    assert pipeline.seen.export() == {"miniticker": {"BTCUSDT": 1000, "币安人生USDT": 1001},
                                   "ticker": {"ETHBTC": 1_700_000_000_123, "LTCBTC": 1_700_000_000_123}}


def test_a_bad_ticker_is_dead_lettered_and_the_rest_of_its_frame_produced():
    pipeline, sink = make()
    frame = orjson.dumps({"stream": "!miniTicker@arr",
                          "data": [mini("BTCUSDT", 1000), mini("ETHUSDT", 1001, close="1.123456789")]})
    run(pipeline.on_frame(frame, meta()))
    assert [(t, k) for t, k, _, _, _ in sink.sent] == [("t.spot.deadletter", b"!miniTicker@arr"),
                                                       ("t.spot.miniticker", b"BTCUSDT")]
    assert dict(sink.sent[0][4])["reason"] == b"decimal_out_of_range"
    assert pipeline.seen.export()["miniticker"] == {"BTCUSDT": 1000}


def test_snapshot_records_are_counted_before_the_dedupe_and_state_size_follows_symbols():
    """The soak's identity (bench/soak_verify.py) needs the snapshot share of duplicates_suppressed_total:
    snapshot_records_total{topic} - records_accepted_total{source=rest_snapshot}. Catches a snapshot path that
    stops counting what it built, and a per-symbol state that does not report its size."""
    pipeline, _ = make()
    topic = "t.spot.miniticker"
    built = metrics.SNAPSHOT_RECORDS.labels(topic)
    accepted = metrics.RECORDS_ACCEPTED.labels(topic, "rest_snapshot")
    before = (built._value.get(), accepted._value.get())
    run(pipeline.on_frame(orjson.dumps([mini("BTCUSDT", 5000)]), meta()))
    entry = {"lastPrice": "2.00000000", "openPrice": "1.00000000", "highPrice": "2.00000000",
             "lowPrice": "1.00000000", "volume": "1.00000000", "quoteVolume": "1.00000000", "closeTime": 4000}
    run(pipeline.on_snapshot([dict(entry, symbol="BTCUSDT"), dict(entry, symbol="ETHUSDT"),
                              dict(entry, symbol="LTCBTC")], {"miniticker"}))
    assert built._value.get() - before[0] == 3
    assert accepted._value.get() - before[1] == 2  # BTCUSDT's 4000 is older than the stream's 5000
    assert pipeline.state_size() == 3


def test_dead_letter_of_a_frame_above_kafkas_record_limit_is_cut_and_says_so():
    """Found by the soak (issue 17): a 5 MiB frame (above --max-frame-bytes, below websockets' 2x limit) was
    counted as a dead letter but its produce raised MSG_SIZE_TOO_LARGE (librdkafka's message.max.bytes is
    1,000,000), so the frame vanished with only a log line. Catches a dead letter larger than one Kafka record."""
    from ingest.binance.events import DEAD_LETTER_MAX_BYTES

    pipeline, sink = make()
    frame = b"[" + b'{"e":"24hrMiniTicker",' * 250_000  # 5.5 MB of invalid JSON
    assert len(frame) > pipeline.settings.max_frame_bytes
    run(pipeline.on_frame(frame, meta()))
    (topic, _, value, _, headers), = sink.sent
    assert topic == "t.spot.deadletter"
    assert len(value) == DEAD_LETTER_MAX_BYTES < 1_000_000 and value == frame[:DEAD_LETTER_MAX_BYTES]
    assert dict(headers)["truncated_from"] == str(len(frame)).encode()
    assert dict(headers)["reason"] == b"frame_too_large"
    small = b"[" + b'{"e":' * 10
    run(pipeline.on_frame(small, meta()))
    assert sink.sent[-1][2] == small and "truncated_from" not in dict(sink.sent[-1][4])


def _sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_subscribed_streams_have_series_before_their_first_record_and_lose_them_when_unsubscribed():
    pipeline, _ = make()
    before = time.time()
    pipeline.track_streams(["!miniTicker@arr", "xyzsilentusdt@ticker", "btcusdt@ticker"])
    subscribed_at = _sample("binance_ingest_last_event_timestamp_seconds", stream="@ticker")
    assert subscribed_at is not None and before <= subscribed_at <= time.time()  # ages from the subscription
    assert _sample("binance_ingest_ws_messages_total", stream="@ticker") is not None
    run(pipeline.on_frame(orjson.dumps({"stream": "!miniTicker@arr", "data": [mini("BTCUSDT", 1000)]}), meta()))
    assert _sample("binance_ingest_last_event_timestamp_seconds", stream="!miniTicker@arr") == 1.0
    assert _sample("binance_ingest_last_event_timestamp_seconds", stream="@ticker") == subscribed_at
    pipeline.track_streams(["!miniTicker@arr", "btcusdt@ticker"])  # still subscribed: the value is kept
    assert _sample("binance_ingest_last_event_timestamp_seconds", stream="@ticker") == subscribed_at
    pipeline.track_streams(["!miniTicker@arr"])  # unsubscribed (shard released, symbol delisted): no alert
    assert _sample("binance_ingest_last_event_timestamp_seconds", stream="@ticker") is None
    assert _sample("binance_ingest_last_event_timestamp_seconds", stream="!miniTicker@arr") == 1.0


def test_non_ascii_symbol_is_keyed_by_its_utf8_bytes():
    pipeline, sink = make()
    run(pipeline.on_frame(orjson.dumps({"stream": "币安人生usdt@miniTicker", "data": mini("币安人生USDT", 1000)}),
                          meta()))
    assert [(t, k) for t, k, *_ in sink.sent] == [("t.spot.miniticker", "币安人生USDT".encode())]


def test_raw_frames_of_several_streams_are_named_by_the_subscribed_all_market_stream():
    settings = Settings(topic_prefix="t.spot")
    encoders = {kind: Encoder(parsed_schema(kind), i + 1) for i, kind in enumerate(("miniticker", "ticker", "symbols"))}
    pipeline = Pipeline(settings, FakeSink(), encoders, ["!miniTicker@arr", "btcusdt@ticker"])
    pipeline.track_streams(["!miniTicker@arr", "btcusdt@ticker"])
    frame = orjson.dumps([mini("ETHBTC", 5000), dict(mini("ETHBTC", 5000), s="BNBBTC")])
    run(pipeline.on_frame(frame, meta()))  # a bare array, as a raw (/ws/) connection delivers it
    assert _sample("binance_ingest_last_event_timestamp_seconds", stream="!miniTicker@arr") == 5.0


def test_frame_gate_counts_the_tickers_of_frames_it_discards():
    """A coordinated replica discards the frames of a revoked shard unread (frames_not_owned_total); the soak's
    identity (issue 17) needs how many tickers that was: tickers_not_owned_total counts their event markers.
    Catches a gate that loses tickers without a count (the soak's identity would then break by exactly that)."""
    from types import SimpleNamespace

    from ingest.worker import Worker

    pipeline, sink = make()
    worker = Worker(Settings(topic_prefix="t.spot"))
    worker.pipeline = pipeline
    worker.coordinator = SimpleNamespace(owned=frozenset({1}))
    worker._stream_shards = {"!miniticker@arr": 0, "btcusdt@ticker": 1}
    frames = metrics.REGISTRY.get_sample_value("binance_ingest_frames_not_owned_total") or 0.0
    tickers = metrics.REGISTRY.get_sample_value("binance_ingest_tickers_not_owned_total") or 0.0
    revoked = orjson.dumps({"stream": "!miniTicker@arr", "data": [mini("BTCUSDT", 1000), mini("ETHUSDT", 1000),
                                                                 mini("币安人生USDT", 1000)]})
    gate_meta = FrameMeta("c1", 1_700_000_000.0, "!miniTicker@arr")  # the connection names the stream
    run(worker._on_owned_frame(revoked, gate_meta))
    run(worker._on_owned_frame(revoked.decode(), gate_meta))
    assert sink.sent == []
    assert metrics.REGISTRY.get_sample_value("binance_ingest_frames_not_owned_total") == frames + 2
    assert metrics.REGISTRY.get_sample_value("binance_ingest_tickers_not_owned_total") == tickers + 6
