"""Binance frames -> Avro-ready ticker records, validated strictly, decimals kept as the exact strings sent.

Why it looks like this:

* The pipeline receives ~2,000-ticker arrays once a second per stream, so a frame is parsed with ONE
  ``orjson.loads`` and every ticker becomes its Avro dict in one step (a dict literal in a loop), with
  no per-record objects or layers. Checking is split: a fast path checks types and the decimal grammar of
  a whole ticker at once (one regex over the joined decimal strings); only a ticker that fails goes
  through the slow, field-by-field diagnosis that names the reason.
* Nothing here raises on bad input. A broken frame becomes one ``Reject`` carrying its raw bytes; a broken
  ticker inside a good array becomes a ``Reject`` for that ticker alone (its JSON re-serialized by orjson:
  same keys, order and strings) and the rest of the array still flows.
* Decimals stay strings (decision and numbers in docs/schemas.md): the exact text Binance sent is what we
  write. Each one must still match ``-?[0-9]{1,30}(.[0-9]{1,8})?`` so every consumer can convert it to
  DECIMAL(38,8) without loss; a value outside that is rejected (``decimal_out_of_range``), never rounded.
* Types are strict because Binance's are fixed: decimals are JSON strings, times/ids/counts JSON integers
  (``bool`` is not accepted as an integer), and integers must fit an Avro long.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
import orjson
from msgspec import Meta, Struct, field

MINITICKER = "miniticker"
TICKER = "ticker"
EVENT_KIND = {"24hrMiniTicker": MINITICKER, "24hrTicker": TICKER}
KIND_EVENT = {kind: event for event, kind in EVENT_KIND.items()}
REST_STREAM = "rest:ticker/24hr"

MAX_INTEGER_DIGITS = 30
MAX_SCALE = 8
"""Decimal strings must fit DECIMAL(38, 8): Binance sends at most 8 decimals."""
LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1

# Possessive quantifiers (``{1,30}+``): the same language (a digit run can only end at '.', '|' or the end, so
# backtracking into it never finds another match), ~40 % less regex time per ticker (docs/performance.md).
_DECIMAL = rf"-?[0-9]{{1,{MAX_INTEGER_DIGITS}}}+(?:\.[0-9]{{1,{MAX_SCALE}}}+)?+"
_DECIMAL_RE = re.compile(_DECIMAL)
_DECIMAL_SYNTAX_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")  # well-formed, whatever its size

# (Binance key, Avro field) in Binance's payload order. Decimal fields first, then the integer ones.
MINI_DECIMALS = (("c", "close_price"), ("o", "open_price"), ("h", "high_price"), ("l", "low_price"),
                 ("v", "base_volume"), ("q", "quote_volume"))
TICKER_DECIMALS = (("p", "price_change"), ("P", "price_change_percent"), ("w", "weighted_avg_price"),
                   ("x", "first_trade_price"), ("c", "close_price"), ("Q", "last_quantity"),
                   ("b", "best_bid_price"), ("B", "best_bid_qty"), ("a", "best_ask_price"), ("A", "best_ask_qty"),
                   ("o", "open_price"), ("h", "high_price"), ("l", "low_price"), ("v", "base_volume"),
                   ("q", "quote_volume"))
TICKER_INTEGERS = (("O", "stats_open_time"), ("C", "stats_close_time"), ("F", "first_trade_id"),
                   ("L", "last_trade_id"), ("n", "trade_count"))
_SPEC = {MINITICKER: (MINI_DECIMALS, ()), TICKER: (TICKER_DECIMALS, TICKER_INTEGERS)}
_ALL_DECIMALS_RE = {kind: re.compile(r"\|".join([_DECIMAL] * len(spec[0]))) for kind, spec in _SPEC.items()}

# GET /api/v3/ticker/24hr entry key -> stream key. prevClosePrice is the price of trade F-1, i.e. 'x'.
REST_TO_STREAM = {"symbol": "s", "priceChange": "p", "priceChangePercent": "P", "weightedAvgPrice": "w",
                  "prevClosePrice": "x", "lastPrice": "c", "lastQty": "Q", "bidPrice": "b", "bidQty": "B",
                  "askPrice": "a", "askQty": "A", "openPrice": "o", "highPrice": "h", "lowPrice": "l",
                  "volume": "v", "quoteVolume": "q", "openTime": "O", "closeTime": "C", "firstId": "F",
                  "lastId": "L", "count": "n"}
_STREAM_TO_REST = {v: k for k, v in REST_TO_STREAM.items()} | {"E": "closeTime"}


class TickerRecord(NamedTuple):
    """One record for the ``miniticker`` or ``ticker`` topic; ``value`` is ready for the Avro encoder."""

    kind: str
    symbol: str
    event_time_ms: int
    value: dict


class Reject(NamedTuple):
    """Something that must go to the dead-letter topic, with the bytes to put there."""

    reason: str
    stream: str
    raw: bytes
    symbol: str | None
    detail: str = ""


class FrameResult(NamedTuple):
    """Everything one frame produced; ``control`` is a method reply such as ``{"result": null, "id": 1}``."""

    stream: str
    records: list[TickerRecord]
    rejects: list[Reject]
    control: dict | None


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


# ----- the fast path: a whole array frame decoded straight into typed structs -----
# msgspec checks in C what the fast path of ``_parse_tickers`` checks in Python: the event type,
# JSON types (no bool or float for an integer, strings for decimals), integer ranges and a non-empty symbol.
# Decimal grammar is checked by the Avro writer (one regex per ticker, ``DECIMALS_OK``) while it reads the
# same fields. Anything unusual makes ``decode_fast`` return None and the frame goes through ``parse_frame``,
# so rejects, reasons and details are exactly the slow path's. Struct attributes are the Avro field names.
_Time = Annotated[int, Meta(ge=0, le=LONG_MAX)]
_Long = Annotated[int, Meta(ge=LONG_MIN, le=LONG_MAX)]
_Symbol = Annotated[str, Meta(min_length=1)]


class FastMiniTicker(Struct, gc=False):
    """A ``24hrMiniTicker`` whose types msgspec checked; decimals are still unchecked strings."""

    event_type: Literal["24hrMiniTicker"] = field(name="e")  # a field, not a struct tag: a tag may be absent
    event_time: _Time = field(name="E")
    symbol: _Symbol = field(name="s")
    close_price: str = field(name="c")
    open_price: str = field(name="o")
    high_price: str = field(name="h")
    low_price: str = field(name="l")
    base_volume: str = field(name="v")
    quote_volume: str = field(name="q")


class FastTicker(Struct, gc=False):
    """A ``24hrTicker`` whose types and integer ranges msgspec checked; decimals are still unchecked strings."""

    event_type: Literal["24hrTicker"] = field(name="e")
    event_time: _Time = field(name="E")
    symbol: _Symbol = field(name="s")
    price_change: str = field(name="p")
    price_change_percent: str = field(name="P")
    weighted_avg_price: str = field(name="w")
    first_trade_price: str = field(name="x")
    close_price: str = field(name="c")
    last_quantity: str = field(name="Q")
    best_bid_price: str = field(name="b")
    best_bid_qty: str = field(name="B")
    best_ask_price: str = field(name="a")
    best_ask_qty: str = field(name="A")
    open_price: str = field(name="o")
    high_price: str = field(name="h")
    low_price: str = field(name="l")
    base_volume: str = field(name="v")
    quote_volume: str = field(name="q")
    stats_open_time: _Long = field(name="O")
    stats_close_time: _Long = field(name="C")
    first_trade_id: _Long = field(name="F")
    last_trade_id: _Long = field(name="L")
    trade_count: _Long = field(name="n")


FAST_TYPES = {MINITICKER: FastMiniTicker, TICKER: FastTicker}
FAST_DECIMALS = {kind: tuple(name for _, name in spec[0]) for kind, spec in _SPEC.items()}
"""Per kind, the struct attributes that hold decimal strings, in the order ``DECIMALS_OK`` expects them."""
DECIMALS_OK = {kind: regex.fullmatch for kind, regex in _ALL_DECIMALS_RE.items()}
"""Per kind: does ``"|".join(decimals)`` hold only decimals that fit DECIMAL(38, 8)? (the fast path's check)"""


def _fast_decoder(item: type) -> msgspec.json.Decoder:
    envelope = msgspec.defstruct(f"{item.__name__}Frame", [("stream", str), ("data", list[item] | item)],
                                 gc=False)  # type: ignore[valid-type]
    return msgspec.json.Decoder(envelope | list[item])  # type: ignore[valid-type]


_FAST_DECODERS = [(kind, _fast_decoder(struct).decode) for kind, struct in FAST_TYPES.items()]


def decode_fast(payload: bytes | str) -> tuple[str, str | None, list] | None:
    """An array frame of one ticker kind -> (kind, stream or None for a bare array, structs); None otherwise.

    None means "not for the fast path" (bad JSON, a bad or unusual ticker, a control reply, mixed kinds):
    the caller then uses ``parse_frame``. A wrong kind fails at the first ticker, so trying both is cheap.
    """
    for kind, decode in _FAST_DECODERS:
        try:
            obj = decode(payload)
        except (msgspec.MsgspecError, ValueError, TypeError):  # invalid UTF-8 in a string is a UnicodeError
            continue
        if type(obj) is list:
            return kind, None, obj
        data = obj.data
        return kind, obj.stream, data if type(data) is list else [data]
    return None


def parse_frame(payload: bytes | bytearray | memoryview | str, *, default_stream: str, connection_id: str,
                ingest_time_us: int, max_frame_bytes: int) -> FrameResult:
    """Turn one WebSocket text frame into records, rejects and/or a control reply. Never raises.

    ``default_stream`` names the stream of raw (non-combined) connections; a combined-stream wrapper
    ``{"stream": ..., "data": ...}`` names its own. For ``str`` payloads the size limit counts characters.
    """
    stream = default_stream
    if len(payload) > max_frame_bytes:
        return _frame_reject("frame_too_large", stream, payload, f"{len(payload)} > {max_frame_bytes}")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return _frame_reject(_undecodable_reason(payload), stream, payload, str(exc)[:200])

    if type(obj) is dict:
        if "data" in obj and "stream" in obj:
            stream = obj["stream"]
            if type(stream) is not str:
                return _frame_reject("wrong_type", default_stream, payload, "stream: expected a string")
            obj = obj["data"]
        elif "id" in obj and ("result" in obj or "error" in obj) and "e" not in obj:
            return FrameResult(stream, [], [], obj)

    records: list[TickerRecord] = []
    rejects: list[Reject] = []
    if type(obj) is list:
        _parse_tickers(obj, stream, connection_id, ingest_time_us, "websocket", records, rejects)
    elif type(obj) is dict:
        _parse_tickers((obj,), stream, connection_id, ingest_time_us, "websocket", records, rejects)
        if rejects:  # a single-object frame: dead-letter the frame exactly as received
            rejects = [rejects[0]._replace(raw=_raw_bytes(payload))]
    else:
        return _frame_reject("not_an_object", stream, payload, f"frame is a JSON {type(obj).__name__}")
    return FrameResult(stream, records, rejects, None)


def snapshot_records(entries: list[dict], *, kinds: set[str], ingest_time_us: int,
                     stream: str = REST_STREAM) -> tuple[list[TickerRecord], list[Reject]]:
    """GET /api/v3/ticker/24hr entries -> records marked ``rest_snapshot``, one per entry and kind.

    The event time is the entry's ``closeTime``; the fields are the stream's (``lastPrice`` becomes
    ``close_price`` and so on, see ``REST_TO_STREAM``), so consumers read one shape whatever the source.
    """
    unknown = set(kinds) - set(KIND_EVENT)
    if unknown:
        raise ValueError(f"unknown ticker kinds: {sorted(unknown)}")
    records: list[TickerRecord] = []
    rejects: list[Reject] = []
    for kind in (MINITICKER, TICKER):
        if kind not in kinds:
            continue
        event = KIND_EVENT[kind]
        translated = []
        for entry in entries:
            if type(entry) is not dict:
                translated.append(entry)
                continue
            item = {REST_TO_STREAM[k]: v for k, v in entry.items() if k in REST_TO_STREAM}
            item["e"] = event
            if "closeTime" in entry:
                item["E"] = entry["closeTime"]
            translated.append(item)
        kind_rejects: list[Reject] = []
        _parse_tickers(translated, stream, None, ingest_time_us, "rest_snapshot", records, kind_rejects, entries)
        rejects.extend(r._replace(detail=_rest_names(r.detail)) for r in kind_rejects)
    return records, rejects


def _rest_names(detail: str) -> str:
    """Name the offending field as REST does (``lastPrice``), not as the stream does (``c``)."""
    key, sep, rest = detail.partition(":")
    return _STREAM_TO_REST.get(key, key) + sep + rest if sep else detail


def _parse_tickers(items: Sequence[Any], stream: str, connection_id: str | None, ingest_time_us: int,
                   source: str, records: list[TickerRecord], rejects: list[Reject],
                   originals: Sequence[Any] | None = None) -> None:
    """The hot loop: one dict per ticker, fast checks, slow diagnosis only for a ticker that fails.

    ``originals`` are the items as received when ``items`` were translated (REST): rejects carry those.
    """
    mini_ok = _ALL_DECIMALS_RE[MINITICKER].fullmatch
    ticker_ok = _ALL_DECIMALS_RE[TICKER].fullmatch
    append = records.append
    for index, item in enumerate(items):
        try:
            event = item["e"]
            if event == "24hrMiniTicker":
                event_time, symbol = item["E"], item["s"]
                c, o, h, low, v, q = item["c"], item["o"], item["h"], item["l"], item["v"], item["q"]
                if (type(event_time) is int and 0 <= event_time <= LONG_MAX and type(symbol) is str and symbol
                        and mini_ok("|".join((c, o, h, low, v, q)))):
                    append(TickerRecord(MINITICKER, symbol, event_time, {
                        "event_type": event, "event_time": event_time, "symbol": symbol,
                        "close_price": c, "open_price": o, "high_price": h, "low_price": low,
                        "base_volume": v, "quote_volume": q,
                        "ingest_time": ingest_time_us, "source": source, "stream": stream,
                        "connection_id": connection_id,
                    }))
                    continue
            elif event == "24hrTicker":
                event_time, symbol = item["E"], item["s"]
                open_time, close_time, first_id, last_id, count = item["O"], item["C"], item["F"], item["L"], item["n"]
                decimals = (item["p"], item["P"], item["w"], item["x"], item["c"], item["Q"], item["b"], item["B"],
                            item["a"], item["A"], item["o"], item["h"], item["l"], item["v"], item["q"])
                if (type(event_time) is int and type(open_time) is int and type(close_time) is int
                        and type(first_id) is int and type(last_id) is int and type(count) is int
                        and 0 <= event_time <= LONG_MAX
                        and min(open_time, close_time, first_id, last_id, count) >= LONG_MIN
                        and max(open_time, close_time, first_id, last_id, count) <= LONG_MAX
                        and type(symbol) is str and symbol and ticker_ok("|".join(decimals))):
                    p, pp, w, x, c, q_, b, bq, a, aq, o, h, low, v, q = decimals
                    append(TickerRecord(TICKER, symbol, event_time, {
                        "event_type": event, "event_time": event_time, "symbol": symbol,
                        "price_change": p, "price_change_percent": pp, "weighted_avg_price": w,
                        "first_trade_price": x, "close_price": c, "last_quantity": q_, "best_bid_price": b,
                        "best_bid_qty": bq, "best_ask_price": a, "best_ask_qty": aq, "open_price": o,
                        "high_price": h, "low_price": low, "base_volume": v, "quote_volume": q,
                        "stats_open_time": open_time, "stats_close_time": close_time, "first_trade_id": first_id,
                        "last_trade_id": last_id, "trade_count": count,
                        "ingest_time": ingest_time_us, "source": source, "stream": stream,
                        "connection_id": connection_id,
                    }))
                    continue
        except (KeyError, TypeError):
            pass  # diagnosed below
        reason, detail = _diagnose(item)
        symbol = item.get("s") if type(item) is dict else None
        original = item if originals is None else originals[index]
        rejects.append(Reject(reason, stream, _dumps(original), symbol if type(symbol) is str else None, detail))


def _diagnose(item: Any) -> tuple[str, str]:
    """Name the first problem of a ticker the fast path refused (slow path, runs only for bad tickers)."""
    if type(item) is not dict:
        return "not_an_object", f"expected a JSON object, got {_json_type(item)}"
    try:
        event = _field(item, "e", str)
        kind = EVENT_KIND.get(event)
        if kind is None:
            return "unknown_event_type", f"e:{event[:40]}"
        event_time = _field(item, "E", int)
        if event_time < 0:
            raise _Invalid("wrong_type", "E: negative event time")
        if not _field(item, "s", str):
            raise _Invalid("wrong_type", "s: empty symbol")
        decimals, integers = _SPEC[kind]
        for key, _ in integers:
            _field(item, key, int)
        for key, _ in decimals:
            check_decimal(_field(item, key, str), key)
    except _Invalid as exc:
        return exc.reason, exc.detail
    return "wrong_type", "unexpected value"  # unreachable when the fast and slow checks agree


def _field(item: dict, key: str, expected: type) -> Any:
    if key not in item:
        raise _Invalid("missing_field", f"{key}:")
    value = item[key]
    if type(value) is not expected:
        raise _Invalid("wrong_type", f"{key}: expected {_json_type(expected())}, got {_json_type(value)}")
    if expected is int and not LONG_MIN <= value <= LONG_MAX:
        raise _Invalid("wrong_type", f"{key}: integer does not fit a 64-bit long")
    return value


def check_decimal(text: str, key: str = "value") -> str:
    """Return ``text`` if it is a decimal that fits DECIMAL(38, 8); raise with the reject reason if not."""
    if _DECIMAL_RE.fullmatch(text):
        return text
    if _DECIMAL_SYNTAX_RE.fullmatch(text):
        raise _Invalid("decimal_out_of_range", f"{key}: {text[:60]!r} needs more than {MAX_SCALE} decimals "
                       f"or {MAX_INTEGER_DIGITS} integer digits")
    raise _Invalid("invalid_decimal", f"{key}: {text[:60]!r} is not a decimal number")


# A dead letter must fit in one Kafka record: librdkafka refuses values above message.max.bytes (default
# 1,000,000) and brokers above max.message.bytes (default ~1 MiB), while frames up to --max-frame-bytes (4 MiB)
# are read and may be rejected. Found by the soak (issue 17): a 5 MiB frame was counted as a dead letter, the
# produce raised MSG_SIZE_TOO_LARGE, and the frame was gone with only an error line.
DEAD_LETTER_MAX_BYTES = 900_000


def dead_letter_value(reject: Reject) -> bytes:
    """The dead-letter record's value: the raw bytes, cut to ``DEAD_LETTER_MAX_BYTES`` (the header
    ``truncated_from`` then gives the original size)."""
    return reject.raw[:DEAD_LETTER_MAX_BYTES]


def dead_letter_headers(reject: Reject, received_time_us: int,
                        connection_id: str | None = None) -> list[tuple[str, bytes]]:
    """Kafka headers of a dead-letter record (documented by schemas/DeadLetter.avsc); the value is
    ``dead_letter_value(reject)``."""
    headers = [("reason", reject.reason.encode()), ("stream", reject.stream.encode()),
               ("received_time", str(received_time_us).encode())]
    if len(reject.raw) > DEAD_LETTER_MAX_BYTES:
        headers.append(("truncated_from", str(len(reject.raw)).encode()))
    if reject.symbol is not None:
        headers.append(("symbol", reject.symbol.encode()))
    if connection_id is not None:
        headers.append(("connection_id", connection_id.encode()))
    if reject.detail:
        headers.append(("detail", reject.detail.encode("utf-8", "backslashreplace")))
    return headers


def _frame_reject(reason: str, stream: str, payload: Any, detail: str) -> FrameResult:
    return FrameResult(stream, [], [Reject(reason, stream, _raw_bytes(payload), None, detail)], None)


def _undecodable_reason(payload: Any) -> str:
    try:
        if isinstance(payload, str):
            payload.encode("utf-8")
        else:
            bytes(payload).decode("utf-8")
    except UnicodeError:
        return "invalid_utf8"
    return "invalid_json"


def _raw_bytes(payload: Any) -> bytes:
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogatepass")  # a lone surrogate stays visible in the dead letter
    return bytes(payload)


def _dumps(item: Any) -> bytes:
    try:
        return orjson.dumps(item)
    except TypeError:  # cannot happen for orjson-parsed input; keep the never-raise promise anyway
        return repr(item).encode("utf-8", "backslashreplace")


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


# exchangeInfo symbol key -> SymbolInfo field, for the attributes the schema models one by one.
_SYMBOL_REQUIRED = {"symbol": ("symbol", str), "status": ("status", str), "baseAsset": ("base_asset", str),
                    "baseAssetPrecision": ("base_asset_precision", int), "quoteAsset": ("quote_asset", str),
                    "quotePrecision": ("quote_precision", int),
                    "quoteAssetPrecision": ("quote_asset_precision", int)}
_SYMBOL_OPTIONAL = {"baseCommissionPrecision": ("base_commission_precision", int),
                    "quoteCommissionPrecision": ("quote_commission_precision", int),
                    "isSpotTradingAllowed": ("is_spot_trading_allowed", bool),
                    "isMarginTradingAllowed": ("is_margin_trading_allowed", bool)}
_SYMBOL_LISTS = {"orderTypes": "order_types", "permissions": "permissions"}


class RecordError(ValueError):
    """An exchangeInfo symbol that cannot become a SymbolInfo record; ``reason`` is a dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def symbol_info_value(entry: dict, *, first_seen_ms: int, last_seen_ms: int, ingest_time_us: int) -> dict:
    """One exchangeInfo ``symbols[]`` entry -> a SymbolInfo Avro dict; raises ``RecordError`` if malformed.

    Nothing is dropped: modelled attributes get fields, other booleans go to ``flags``, anything else to
    ``other_fields`` as JSON text, and every filter is kept whole with its values as strings.
    """
    if type(entry) is not dict:
        raise RecordError("not_an_object", f"symbol entry is a JSON {_json_type(entry)}")
    try:
        value: dict[str, Any] = {name: _field(entry, key, kind) for key, (name, kind) in _SYMBOL_REQUIRED.items()}
        for key, (name, kind) in _SYMBOL_OPTIONAL.items():
            value[name] = _field(entry, key, kind) if entry.get(key) is not None else None
        for key, name in _SYMBOL_LISTS.items():
            value[name] = _string_list(entry.get(key, []), key)
        sets = entry.get("permissionSets", [])
        if type(sets) is not list:
            raise _Invalid("wrong_type", "permissionSets: expected an array")
        value["permission_sets"] = [_string_list(s, "permissionSets") for s in sets]
        value["filters"] = _filters(entry.get("filters", []))
    except _Invalid as exc:
        raise RecordError(exc.reason, exc.detail) from None
    modelled = set(_SYMBOL_REQUIRED) | set(_SYMBOL_OPTIONAL) | set(_SYMBOL_LISTS) | {"permissionSets", "filters"}
    value["flags"] = {k: v for k, v in entry.items() if k not in modelled and type(v) is bool}
    value["other_fields"] = {k: orjson.dumps(v).decode() for k, v in entry.items()
                             if k not in modelled and type(v) is not bool}
    value["first_seen"] = first_seen_ms
    value["last_seen"] = last_seen_ms
    value["ingest_time"] = ingest_time_us
    return value


def _string_list(value: Any, key: str) -> list[str]:
    if type(value) is not list or any(type(v) is not str for v in value):
        raise _Invalid("wrong_type", f"{key}: expected an array of strings")
    return value


def _filters(filters: Any) -> list[dict]:
    if type(filters) is not list:
        raise _Invalid("wrong_type", "filters: expected an array")
    out = []
    for f in filters:
        if type(f) is not dict or type(f.get("filterType")) is not str:
            raise _Invalid("wrong_type", "filters: each filter must be an object with a string filterType")
        params = {k: v if type(v) is str else orjson.dumps(v).decode() for k, v in f.items() if k != "filterType"}
        out.append({"filter_type": f["filterType"], "params": params})
    return out
