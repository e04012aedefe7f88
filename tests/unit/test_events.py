"""Frames -> records: shapes from Binance's reference and real captures, every reject reason, never raising."""

from __future__ import annotations

import json
import random
from pathlib import Path

import orjson
import pytest

from ingest.binance import events
from ingest.binance.events import (
    MINI_DECIMALS,
    REST_TO_STREAM,
    TICKER_DECIMALS,
    TICKER_INTEGERS,
    FrameResult,
    RecordError,
    dead_letter_headers,
    parse_frame,
    snapshot_records,
    symbol_info_value,
)

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance-captures"
NOW_US = 1_710_038_821_123_456
LIMIT = 4 * 1024 * 1024


def parse(payload: bytes | str, stream: str = "!miniTicker@arr", limit: int = LIMIT) -> FrameResult:
    return parse_frame(payload, default_stream=stream, connection_id="conn-1", ingest_time_us=NOW_US,
                       max_frame_bytes=limit)


def mini(symbol: str = "BTCUSDT", **over: object) -> dict:
    """A 24hrMiniTicker exactly as Binance's reference shows it (keys in Binance's order)."""
    t = {"e": "24hrMiniTicker", "E": 1234567890123, "s": symbol, "c": "43250.50", "o": "43100.00",
         "h": "43500.00", "l": "42800.00", "v": "15234.56", "q": "658923456.78"}
    t.update(over)
    return t


def ticker(symbol: str = "ETHBTC", **over: object) -> dict:
    """A 24hrTicker with every field of the reference, in Binance's order, each value distinct."""
    t = {"e": "24hrTicker", "E": 1710038400000, "s": symbol, "p": "-0.00041000", "P": "-0.713",
         "w": "0.05731207", "x": "0.05749000", "c": "0.05708000", "Q": "3.12500000", "b": "0.05707000",
         "B": "12.50000000", "a": "0.05709000", "A": "21.75000000", "o": "0.05749500", "h": "0.05790000",
         "l": "0.05690000", "v": "18000.25000000", "q": "1031.51234567", "O": 1709952000000, "C": 1710038400000,
         "F": 400000001, "L": 400050000, "n": 50000}
    t.update(over)
    return t


def frame(items: object) -> bytes:
    return orjson.dumps(items)


# --- good frames -----------------------------------------------------------------------------------------

def test_miniticker_array_becomes_records_with_every_field_and_metadata() -> None:
    result = parse(frame([mini("BTCUSDT"), mini("1INCHUSDT", c="0.39800000")]))
    assert result.rejects == [] and result.control is None and result.stream == "!miniTicker@arr"
    assert [r.kind for r in result.records] == ["miniticker", "miniticker"]
    first = result.records[0]
    assert (first.symbol, first.event_time_ms) == ("BTCUSDT", 1234567890123)
    assert first.value == {
        "event_type": "24hrMiniTicker", "event_time": 1234567890123, "symbol": "BTCUSDT",
        "close_price": "43250.50", "open_price": "43100.00", "high_price": "43500.00", "low_price": "42800.00",
        "base_volume": "15234.56", "quote_volume": "658923456.78",
        "ingest_time": NOW_US, "source": "websocket", "stream": "!miniTicker@arr", "connection_id": "conn-1",
    }
    assert result.records[1].symbol == "1INCHUSDT" and result.records[1].value["close_price"] == "0.39800000"


def test_ticker_maps_every_binance_letter_to_its_readable_field() -> None:
    t = ticker()
    (record,) = parse(frame(t), stream="ethbtc@ticker").records
    assert record.kind == "ticker" and record.value["stream"] == "ethbtc@ticker"
    expected = {"p": "price_change", "P": "price_change_percent", "w": "weighted_avg_price",
                "x": "first_trade_price", "c": "close_price", "Q": "last_quantity", "b": "best_bid_price",
                "B": "best_bid_qty", "a": "best_ask_price", "A": "best_ask_qty", "o": "open_price",
                "h": "high_price", "l": "low_price", "v": "base_volume", "q": "quote_volume",
                "O": "stats_open_time", "C": "stats_close_time", "F": "first_trade_id", "L": "last_trade_id",
                "n": "trade_count", "E": "event_time", "s": "symbol", "e": "event_type"}
    for letter, name in expected.items():
        assert record.value[name] == t[letter], letter
    assert dict(TICKER_DECIMALS) | dict(TICKER_INTEGERS) == {k: v for k, v in expected.items() if k not in "eEs"}


def test_single_object_frame_of_a_per_symbol_stream() -> None:
    result = parse(frame(mini("BNBBTC")), stream="bnbbtc@miniTicker")
    assert [r.symbol for r in result.records] == ["BNBBTC"]
    assert result.records[0].value["stream"] == "bnbbtc@miniTicker"


def test_combined_stream_wrapper_takes_the_stream_name_from_the_wrapper() -> None:
    wrapped = {"stream": "!ticker@arr", "data": [ticker("ETHBTC"), ticker("LTCBTC")]}
    result = parse(frame(wrapped), stream="default-should-not-be-used")
    assert result.stream == "!ticker@arr"
    assert [r.value["stream"] for r in result.records] == ["!ticker@arr", "!ticker@arr"]
    single = parse(frame({"stream": "btcusdt@miniTicker", "data": mini()}))
    assert single.stream == "btcusdt@miniTicker" and len(single.records) == 1


def test_str_payload_is_accepted_like_bytes() -> None:
    text = json.dumps([mini()])
    assert parse(text).records == parse(text.encode()).records


@pytest.mark.parametrize("reply", [{"result": None, "id": 1}, {"result": ["!miniTicker@arr"], "id": 7},
                                   {"error": {"code": 2, "msg": "Invalid request"}, "id": 3}])
def test_method_replies_are_control_not_rejects(reply: dict) -> None:
    result = parse(frame(reply))
    assert result.control == reply and result.records == [] and result.rejects == []


def test_empty_array_is_fine() -> None:
    assert parse(b"[]") == FrameResult("!miniTicker@arr", [], [], None)


def test_two_thousand_ticker_array_keeps_every_value_exactly() -> None:
    rng = random.Random(2024)
    items = []
    for i in range(2000):
        price = f"{rng.randint(0, 10**12)}.{rng.randint(0, 10**8 - 1):08d}"
        items.append(mini(f"S{i}USDT", E=1710038820000 + i, c=price, q=f"{rng.randint(0, 10**12)}.05000000"))
    result = parse(frame(items))
    assert result.rejects == [] and len(result.records) == 2000
    for item, record in zip(items, result.records, strict=True):
        assert record.symbol == item["s"] and record.event_time_ms == item["E"]
        assert [record.value[name] for _, name in MINI_DECIMALS] == [item[k] for k, _ in MINI_DECIMALS]


def test_largest_real_decimal_is_kept() -> None:
    (record,) = parse(frame([mini("LUNCUSDT", v="284227394804.05000000")])).records
    assert record.value["base_volume"] == "284227394804.05000000"


def test_negative_and_zero_values_of_real_shapes_pass() -> None:
    # Delisted symbols: zero prices, no trades (firstId/lastId -1, count 0).
    t = ticker("BCCBTC", p="0.00000000", P="0.000", c="0.00000000", F=-1, L=-1, n=0)
    (record,) = parse(frame([t])).records
    assert (record.value["first_trade_id"], record.value["trade_count"]) == (-1, 0)
    assert parse(frame([ticker(p="-0.00041000", P="-0.713")])).rejects == []


# --- rejects ---------------------------------------------------------------------------------------------

def only_reject(result: FrameResult):
    assert result.records == [] and len(result.rejects) == 1, result
    return result.rejects[0]


def test_invalid_json_keeps_the_raw_bytes() -> None:
    raw = b'[{"e":"24hrMiniTicker",'
    reject = only_reject(parse(raw))
    assert (reject.reason, reject.raw, reject.stream, reject.symbol) == ("invalid_json", raw, "!miniTicker@arr", None)


def test_invalid_utf8_bytes() -> None:
    raw = b'[{"e":"24hrMiniTicker","s":"\xff\xfe"}]'
    reject = only_reject(parse(raw))
    assert reject.reason == "invalid_utf8" and reject.raw == raw


def test_invalid_utf8_in_a_str_payload_lone_surrogate() -> None:
    reject = only_reject(parse('{"s":"\ud800"}'))
    assert reject.reason == "invalid_utf8" and reject.raw == '{"s":"\ud800"}'.encode("utf-8", "surrogatepass")


def test_frame_too_large_is_not_parsed() -> None:
    raw = frame([mini() for _ in range(10)])
    reject = only_reject(parse(raw, limit=len(raw) - 1))
    assert reject.reason == "frame_too_large" and reject.raw == raw
    assert parse(raw, limit=len(raw)).rejects == []


@pytest.mark.parametrize("raw", [b"42", b'"text"', b"null", b"true"])
def test_frame_that_is_not_an_object_or_array(raw: bytes) -> None:
    reject = only_reject(parse(raw))
    assert reject.reason == "not_an_object" and reject.raw == raw


def test_array_element_that_is_not_an_object_rejects_only_that_element() -> None:
    result = parse(frame([mini("AAA"), [1, 2], mini("BBB"), "x"]))
    assert [r.symbol for r in result.records] == ["AAA", "BBB"]
    assert [(r.reason, r.raw) for r in result.rejects] == [("not_an_object", b"[1,2]"), ("not_an_object", b'"x"')]


def test_unknown_event_type_real_depth_update_shape() -> None:
    depth = {"e": "depthUpdate", "E": 1700000000123, "s": "ABCUSDT", "U": 1000, "u": 1002,
             "b": [["0.10000000", "100.00000000"]], "a": []}
    wrapped = frame({"stream": "abcusdt@depth@100ms", "data": depth})
    reject = only_reject(parse(wrapped))
    assert (reject.reason, reject.stream, reject.symbol) == ("unknown_event_type", "abcusdt@depth@100ms", "ABCUSDT")
    assert reject.raw == wrapped  # a single-object frame is dead-lettered exactly as received


def test_book_ticker_without_event_type_is_missing_field() -> None:
    book = {"u": 400900217, "s": "BNBUSDT", "b": "25.35190000", "B": "31.21000000", "a": "25.36520000",
            "A": "40.66000000"}
    reject = only_reject(parse(frame(book)))
    assert reject.reason == "missing_field" and reject.detail.startswith("e:")


@pytest.mark.parametrize("missing", ["E", "s", "c", "o", "h", "l", "v", "q"])
def test_missing_field_in_a_mini_ticker(missing: str) -> None:
    bad = mini("BADUSDT")
    del bad[missing]
    result = parse(frame([mini("AAA"), bad, mini("BBB")]))
    assert [r.symbol for r in result.records] == ["AAA", "BBB"]
    (reject,) = result.rejects
    assert reject.reason == "missing_field" and reject.detail.startswith(missing + ":")
    assert reject.raw == orjson.dumps(bad)
    assert reject.symbol == (None if missing == "s" else "BADUSDT")


@pytest.mark.parametrize("missing", [k for k in ticker() if k != "e"])
def test_missing_field_in_a_ticker(missing: str) -> None:
    bad = ticker()
    del bad[missing]
    reject = only_reject(parse(frame([bad])))
    assert reject.reason == "missing_field" and reject.detail.startswith(missing + ":")


@pytest.mark.parametrize(("field", "value"), [
    ("c", 43250.5),            # a JSON number instead of a decimal string
    ("c", 43250),              # an integer instead of a decimal string
    ("v", None),
    ("E", "1234567890123"),    # event time as a string
    ("E", True),               # bool is not an integer
    ("E", 1.5e12),
    ("E", 2**64 - 1),          # parses as an integer but does not fit an Avro long
    ("E", -1),
    ("s", 5),
    ("s", ""),
    ("e", 5),
])
def test_wrong_type_in_a_mini_ticker(field: str, value: object) -> None:
    reject = only_reject(parse(frame([mini(**{field: value})])))
    assert reject.reason == "wrong_type", reject
    assert reject.detail.startswith(field + ":")


@pytest.mark.parametrize(("field", "value"), [("n", False), ("F", "1"), ("O", 1.0), ("L", 2**63), ("p", 1)])
def test_wrong_type_in_a_ticker(field: str, value: object) -> None:
    reject = only_reject(parse(frame([ticker(**{field: value})])))
    assert reject.reason == "wrong_type" and reject.detail.startswith(field + ":")


def test_integer_limits_of_avro_long_are_accepted() -> None:
    assert parse(frame([ticker(F=-(2**63), L=2**63 - 1)])).rejects == []


@pytest.mark.parametrize("value", ["0.123456789", "1.000000000", "1" * 31, "-" + "9" * 31 + ".5"])
def test_decimal_that_would_lose_precision_is_rejected_not_rounded(value: str) -> None:
    reject = only_reject(parse(frame([mini(h=value)])))
    assert reject.reason == "decimal_out_of_range" and reject.detail.startswith("h:")


def test_decimal_at_the_limits_is_accepted() -> None:
    value = "9" * 30 + ".12345678"
    (record,) = parse(frame([mini(h=value, l="-" + value)])).records
    assert record.value["high_price"] == value and record.value["low_price"] == "-" + value


@pytest.mark.parametrize("value", ["", "1e5", "NaN", "Infinity", " 1", "1 ", "+1", ".5", "1.", "1.2.3", "--1",
                                   "0x10", "\u0661\u0662", "1,5", "-"])
def test_malformed_decimal_is_invalid_decimal(value: str) -> None:
    reject = only_reject(parse(frame([mini(q=value)])))
    assert reject.reason == "invalid_decimal" and reject.detail.startswith("q:")


def test_wrapper_with_a_non_string_stream_is_rejected_whole() -> None:
    raw = frame({"stream": 5, "data": [mini()]})
    reject = only_reject(parse(raw))
    assert reject.reason == "wrong_type" and reject.raw == raw


def test_parse_frame_never_raises_on_mutated_frames() -> None:
    """Random corruption of real shapes: every element ends as exactly one record or one reject."""
    rng = random.Random(99)
    good = [mini("S0"), ticker("T0")]
    junk = [None, True, 1, -1, 2**70, 1.5, "", "x", "1e5", [], {}, "0.1234567890"]
    for _ in range(500):
        items = [dict(rng.choice(good)) for _ in range(rng.randint(1, 6))]
        for item in items:
            for _ in range(rng.randint(0, 2)):
                key = rng.choice(list(item))
                if rng.random() < 0.3:
                    del item[key]
                else:
                    item[key] = rng.choice(junk)
        raw = json.dumps(items).encode()  # json: orjson refuses 2**70 on the way out
        if rng.random() < 0.2:
            cut = rng.randint(0, len(raw))
            raw = raw[:cut] + bytes([rng.randint(0, 255)]) + raw[cut + 1:]
        result = parse(raw)
        if len(result.rejects) == 1 and result.rejects[0].raw == raw:
            continue  # the whole frame was rejected
        assert len(result.records) + len(result.rejects) == len(items)


# --- REST snapshot ---------------------------------------------------------------------------------------

REST_ENTRY = {  # the shape of GET /api/v3/ticker/24hr in Binance's reference, in its key order
    "symbol": "BTCUSDT", "priceChange": "150.50", "priceChangePercent": "0.35", "weightedAvgPrice": "43150.25",
    "prevClosePrice": "43100.00", "lastPrice": "43250.50", "lastQty": "0.5", "bidPrice": "43250.00",
    "bidQty": "1.2", "askPrice": "43251.00", "askQty": "0.8", "openPrice": "43100.01", "highPrice": "43500.00",
    "lowPrice": "42800.00", "volume": "15234.56", "quoteVolume": "658923456.78", "openTime": 1234567890123,
    "closeTime": 1234567950123, "firstId": 100, "lastId": 200, "count": 101,
}


def test_snapshot_miniticker_maps_rest_names_and_uses_close_time() -> None:
    batches, rejects = snapshot_records([REST_ENTRY], kinds={"miniticker"}, ingest_time_us=NOW_US)
    records = records_of(batches)
    assert rejects == []
    (record,) = records
    assert record.kind == "miniticker" and record.event_time_ms == REST_ENTRY["closeTime"]
    assert record.value == {
        "event_type": "24hrMiniTicker", "event_time": 1234567950123, "symbol": "BTCUSDT",
        "close_price": "43250.50", "open_price": "43100.01", "high_price": "43500.00", "low_price": "42800.00",
        "base_volume": "15234.56", "quote_volume": "658923456.78",
        "ingest_time": NOW_US, "source": "rest_snapshot", "stream": "rest:ticker/24hr", "connection_id": None,
    }


def test_snapshot_ticker_has_every_field() -> None:
    batches, rejects = snapshot_records([REST_ENTRY], kinds={"ticker", "miniticker"}, ingest_time_us=NOW_US)
    records = records_of(batches)
    assert rejects == [] and sorted(r.kind for r in records) == ["miniticker", "ticker"]
    value = next(r.value for r in records if r.kind == "ticker")
    names = dict(TICKER_DECIMALS) | dict(TICKER_INTEGERS)
    for rest_key, letter in REST_TO_STREAM.items():
        field = "symbol" if letter == "s" else names[letter]
        assert value[field] == REST_ENTRY[rest_key], rest_key
    assert value["event_type"] == "24hrTicker" and value["event_time"] == REST_ENTRY["closeTime"]


def test_snapshot_reject_names_the_rest_field_and_keeps_the_entry() -> None:
    bad = dict(REST_ENTRY, symbol="BADUSDT", lastPrice="1.123456789")
    missing = {k: v for k, v in REST_ENTRY.items() if k != "bidPrice"}
    batches, rejects = snapshot_records([REST_ENTRY, bad, missing], kinds={"ticker"}, ingest_time_us=NOW_US)
    records = records_of(batches)
    assert [r.symbol for r in records] == ["BTCUSDT"]
    assert [(r.reason, r.detail.partition(":")[0], r.symbol) for r in rejects] == [
        ("decimal_out_of_range", "lastPrice", "BADUSDT"), ("missing_field", "bidPrice", "BTCUSDT")]
    assert rejects[0].raw == orjson.dumps(bad) and rejects[0].stream == "rest:ticker/24hr"


def test_snapshot_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown ticker kinds"):
        snapshot_records([REST_ENTRY], kinds={"bookticker"}, ingest_time_us=NOW_US)


def real_file(name: str) -> Path:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"real capture {path} not present (see ../shared/data/binance-captures/SOURCES.md)")
    return path


def test_real_ticker24hr_snapshot_parses_without_rejects_and_exactly() -> None:
    entries = json.loads(real_file("ticker24hr.json").read_text())
    batches, rejects = snapshot_records(entries, kinds={"miniticker", "ticker"}, ingest_time_us=NOW_US)
    records = records_of(batches)
    assert rejects == [] and len(records) == 2 * len(entries)
    by_symbol = {r.symbol: r.value for r in records if r.kind == "ticker"}
    for entry in entries:
        value = by_symbol[entry["symbol"]]
        assert value["quote_volume"] == entry["quoteVolume"] and value["first_trade_price"] == entry["prevClosePrice"]
        assert value["first_trade_id"] == entry["firstId"] and value["stats_close_time"] == entry["closeTime"]


def test_real_ticker24hr_values_as_a_stream_frame() -> None:
    entries = json.loads(real_file("ticker24hr.json").read_text())[:2000]
    batches, _ = snapshot_records(entries, kinds={"ticker"}, ingest_time_us=NOW_US)
    snapshot = records_of(batches)
    items = []
    for r in snapshot:
        item = {"e": "24hrTicker", "E": r.event_time_ms, "s": r.symbol}
        item.update({k: r.value[name] for k, name in TICKER_DECIMALS + TICKER_INTEGERS})
        items.append(item)
    result = parse(frame({"stream": "!ticker@arr", "data": items}))
    assert result.rejects == [] and len(result.records) == 2000
    assert [r.value for r in result.records] == [
        dict(s.value, source="websocket", stream="!ticker@arr", connection_id="conn-1") for s in snapshot]


# --- dead letters and symbol info ------------------------------------------------------------------------

def test_dead_letter_headers() -> None:
    (reject,) = parse(frame([mini(c="1e5")])).rejects
    headers = dict(dead_letter_headers(reject, NOW_US, "conn-1"))
    assert headers == {"reason": b"invalid_decimal", "stream": b"!miniTicker@arr",
                       "received_time": str(NOW_US).encode(), "symbol": b"BTCUSDT", "connection_id": b"conn-1",
                       "detail": reject.detail.encode()}
    frame_reject = only_reject(parse(b"{"))
    assert [k for k, _ in dead_letter_headers(frame_reject, NOW_US)] == ["reason", "stream", "received_time",
                                                                          "detail"]


SYMBOL = {"symbol": "ETHBTC", "status": "TRADING", "baseAsset": "ETH", "baseAssetPrecision": 8, "quoteAsset": "BTC",
          "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
          "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": True, "ocoAllowed": True,
          "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
          "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.00000100", "maxPrice": "100000.00000000",
                       "tickSize": "0.00000100"},
                      {"filterType": "MIN_NOTIONAL", "minNotional": "0.00010000", "applyToMarket": True,
                       "avgPriceMins": 5},
                      {"filterType": "SOME_FUTURE_FILTER", "anything": "1"}],
          "permissions": ["SPOT", "MARGIN"], "defaultSelfTradePreventionMode": "NONE"}


def test_symbol_info_keeps_every_attribute_and_filter() -> None:
    value = symbol_info_value(SYMBOL, first_seen_ms=1, last_seen_ms=2, ingest_time_us=3)
    assert value["filters"] == [
        {"filter_type": "PRICE_FILTER", "params": {"minPrice": "0.00000100", "maxPrice": "100000.00000000",
                                                   "tickSize": "0.00000100"}},
        {"filter_type": "MIN_NOTIONAL", "params": {"minNotional": "0.00010000", "applyToMarket": "true",
                                                   "avgPriceMins": "5"}},
        {"filter_type": "SOME_FUTURE_FILTER", "params": {"anything": "1"}}]
    assert value["flags"] == {"icebergAllowed": True, "ocoAllowed": True}
    assert value["other_fields"] == {"defaultSelfTradePreventionMode": '"NONE"'}
    assert value["is_margin_trading_allowed"] is False and value["permission_sets"] == []
    assert (value["first_seen"], value["last_seen"], value["ingest_time"]) == (1, 2, 3)


def test_symbol_info_rejects_malformed_entries() -> None:
    with pytest.raises(RecordError) as info:
        symbol_info_value({k: v for k, v in SYMBOL.items() if k != "baseAsset"}, first_seen_ms=1, last_seen_ms=1,
                          ingest_time_us=1)
    assert info.value.reason == "missing_field"
    with pytest.raises(RecordError, match="wrong_type"):
        symbol_info_value(dict(SYMBOL, filters=[{"minPrice": "1"}]), first_seen_ms=1, last_seen_ms=1,
                          ingest_time_us=1)


# --- a frame decoded whole (msgspec) and item by item (the fallback) gives the same records -------------------

def records_of(batches: list) -> list:
    return [rec for batch in batches for rec in batch.records()]


def whole_records(raw: bytes, stream: str = "!miniTicker@arr") -> list[tuple[str, dict]] | None:
    """(kind, Avro value) per ticker when the whole frame decodes at once, else None (item by item then)."""
    decoded = events._decode_whole(raw)
    if decoded is None:
        return None
    kind, frame_stream, items = decoded
    batch = events.Batch(kind, items, frame_stream or stream, "websocket", "conn-1", NOW_US)
    return [(r.kind, r.value) for r in batch.records()]


def item_records(raw: bytes, stream: str = "!miniTicker@arr") -> tuple[list[tuple[str, dict]], list]:
    """The same frame through the item-by-item decoder only."""
    obj = orjson.loads(raw)
    if type(obj) is dict:
        stream, obj = obj["stream"], obj["data"]
    rejects: list = []
    batches = events._decode_items(obj if type(obj) is list else [obj], stream, "conn-1", NOW_US, "websocket",
                                   rejects)
    return [(r.kind, r.value) for r in records_of(batches)], rejects


def test_whole_frames_decode_good_arrays_and_envelopes_as_item_by_item_does() -> None:
    for payload in (frame([mini("BTCUSDT"), mini("ETHUSDT", E=2**63 - 1, c="-0.00000001")]),
                    frame({"stream": "!ticker@arr", "data": [ticker(), ticker("LTCBTC", n=-(2**63), L=2**63 - 1)]}),
                    frame({"stream": "btcusdt@miniTicker", "data": mini()}),
                    frame([dict(mini(), extra="ignored", e="24hrMiniTicker")]), b"[]"):
        whole = whole_records(payload)
        assert whole is not None, payload
        assert item_records(payload) == (whole, [])
        assert [(r.kind, r.value) for r in parse(payload).records] == whole


@pytest.mark.parametrize("payload", [
    frame([mini(), ticker()]),  # mixed kinds: decoded item by item
    frame(mini()),  # a single object of a raw per-symbol stream
    frame({"result": None, "id": 1}),
    frame([{k: v for k, v in mini().items() if k != "e"}]),  # no event type
    frame([mini(E=True)]), frame([mini(E=1.0)]), frame([mini(E=-1)]), frame([mini(s="")]),
    json.dumps([ticker(F=2**63)]).encode(), frame([mini(c=1)]), frame([{"e": "24hrMiniTicker"}]),
    frame([mini(c="1.123456789")]), frame([ticker(q="1e5")]),
    b'[{"e":"24hrMiniTicker","e":"24hrTicker"}]', b"[", b"\xff", b'[{"e":"24hrMiniTicker","s":"\xff"}]',
    b'{"stream":"\xff","data":[]}', "\udcff[]", '[{"e":"24hrMiniTicker","s":"\ud800"}]',  # bad UTF-8, surrogates
])
def test_anything_unusual_is_decoded_item_by_item(payload: bytes) -> None:
    assert events._decode_whole(payload) is None


def test_whole_frame_decoding_never_accepts_what_item_decoding_rejects_and_agrees_on_values() -> None:
    """Random mutations of real shapes: whenever a frame decodes whole, the item-by-item decoder produces the
    very same records and rejects nothing."""
    rng = random.Random(7)
    good = [mini("S0"), ticker("T0")]
    junk = [None, True, 1, -1, 2**63, 2**70, 1.5, "", "x", "1e5", [], {}, "0.1234567890", "1.", ".5", "-",
            "1" * 31, "1" * 30, "01.10", "1\n", "\uff11", "1|2", "-0", "1.00000000"]
    taken = 0
    for _ in range(3000):
        base = rng.choice(good)
        items = [dict(base) for _ in range(rng.randint(1, 5))]
        for item in items:
            for _ in range(rng.choice([0, 0, 1, 2])):
                key = rng.choice(list(item))
                if rng.random() < 0.2:
                    del item[key]
                else:
                    item[key] = rng.choice(junk)
        raw = json.dumps(items if rng.random() < 0.5 else {"stream": "!x@arr", "data": items}).encode()
        whole = whole_records(raw)
        if whole is None:
            continue
        taken += 1
        assert item_records(raw) == (whole, []), raw
    assert taken > 300  # the unmutated and harmlessly mutated frames did decode whole
