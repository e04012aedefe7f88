"""Binance frames -> typed ticker records, validated where they are decoded, decimals kept as the exact strings.

Why it looks like this:

* One typed record per Binance message: ``MiniTicker`` and ``Ticker`` (msgspec structs). Their definitions are
  the ONE map of Binance letter <-> record attribute, and the attribute names are the Avro field names
  (schemas/*.avsc is the contract; scripts/gen_avro_writers.py refuses to generate writers when they differ).
  Everything else here (decimal and integer field lists, the REST names) is derived from those structs.
* A frame is decoded once, from its bytes, by msgspec straight into a list of structs (types, the event type,
  long ranges and a non-empty symbol are checked in C); the decimal grammar of each record is checked right
  after, one regex per record. The frame's shared fields (stream, source, connection, ingest time) travel once
  per frame in a ``Batch``, not per record.
* A frame that fails as a whole (a bad ticker, invalid JSON, a control reply, a single object...) is decoded
  item by item by ``_item``, which checks the same fields of the same structs in Python and names the first
  problem of each bad ticker for the dead-letter topic; good tickers of the same frame still flow.
* Nothing here raises on bad input. A broken frame becomes one ``Reject`` carrying its raw bytes; a broken
  ticker inside a good array becomes a ``Reject`` for that ticker alone (its JSON re-serialized by orjson:
  same keys, order and strings).
* Decimals stay strings (decision and numbers in docs/schemas.md): the exact text Binance sent is what we
  write. Each one must still match ``-?[0-9]{1,30}(.[0-9]{1,8})?`` so every consumer can convert it to
  DECIMAL(38,8) without loss; a value outside that is rejected (``decimal_out_of_range``), never rounded.
  A valid decimal is ASCII and at most 40 characters long, which the Avro writers rely on.
* Types are strict because Binance's are fixed: decimals are JSON strings, times/ids/counts JSON integers
  (``bool`` is not accepted as an integer), and integers must fit an Avro long.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from operator import attrgetter
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

_Time = Annotated[int, Meta(ge=0, le=LONG_MAX)]
_Long = Annotated[int, Meta(ge=LONG_MIN, le=LONG_MAX)]
_Symbol = Annotated[str, Meta(min_length=1)]


class MiniTicker(Struct, gc=False):
    """A ``24hrMiniTicker``. Attribute = Avro field of MiniTicker.avsc; ``name=`` = Binance's letter."""

    event_type: Literal["24hrMiniTicker"] = field(name="e")  # a field, not a struct tag: a tag may be absent
    event_time: _Time = field(name="E")
    symbol: _Symbol = field(name="s")
    close_price: str = field(name="c")
    open_price: str = field(name="o")
    high_price: str = field(name="h")
    low_price: str = field(name="l")
    base_volume: str = field(name="v")
    quote_volume: str = field(name="q")


class Ticker(Struct, gc=False):
    """A ``24hrTicker``. Attribute = Avro field of Ticker.avsc; ``name=`` = Binance's letter."""

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


TickerItem = MiniTicker | Ticker
TYPES: dict[str, type[MiniTicker] | type[Ticker]] = {MINITICKER: MiniTicker, TICKER: Ticker}
FRAME_FIELDS = ("ingest_time", "source", "stream", "connection_id")
"""The Avro fields a frame's records share (the schemas' last fields), carried once per ``Batch``."""


def _fields_of(struct: type) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """(Binance letter, attribute) of a struct's decimal (str) and integer fields, in Binance's order."""
    decimals: list[tuple[str, str]] = []
    integers: list[tuple[str, str]] = []
    for f in msgspec.structs.fields(struct):
        if f.name in ("event_type", "event_time", "symbol"):
            continue
        base = typing.get_args(f.type)[0] if typing.get_origin(f.type) is Annotated else f.type
        (integers if base is int else decimals).append((f.encode_name, f.name))
    return tuple(decimals), tuple(integers)


MINI_DECIMALS, _ = _fields_of(MiniTicker)
TICKER_DECIMALS, TICKER_INTEGERS = _fields_of(Ticker)
_SPEC = {kind: _fields_of(struct) for kind, struct in TYPES.items()}
_LETTERS = {kind: tuple(f.encode_name for f in msgspec.structs.fields(struct)) for kind, struct in TYPES.items()}
_ALL_DECIMALS_RE = {kind: re.compile(r"\|".join([_DECIMAL] * len(spec[0]))) for kind, spec in _SPEC.items()}
DECIMALS_OK = {kind: regex.fullmatch for kind, regex in _ALL_DECIMALS_RE.items()}
"""Per kind: does ``"|".join(decimals)`` hold only decimals that fit DECIMAL(38, 8)?"""
_DECIMALS_OF = {kind: attrgetter(*(name for _, name in spec[0])) for kind, spec in _SPEC.items()}

# GET /api/v3/ticker/24hr entry key -> Binance stream letter (the only REST names; type=MINI answers are a subset).
# prevClosePrice is the price of trade F-1, i.e. 'x'.
REST_TO_STREAM = {"symbol": "s", "priceChange": "p", "priceChangePercent": "P", "weightedAvgPrice": "w",
                  "prevClosePrice": "x", "lastPrice": "c", "lastQty": "Q", "bidPrice": "b", "bidQty": "B",
                  "askPrice": "a", "askQty": "A", "openPrice": "o", "highPrice": "h", "lowPrice": "l",
                  "volume": "v", "quoteVolume": "q", "openTime": "O", "closeTime": "C", "firstId": "F",
                  "lastId": "L", "count": "n"}
_STREAM_TO_REST = {v: k for k, v in REST_TO_STREAM.items()} | {"E": "closeTime"}


class Batch(NamedTuple):
    """Records of one kind from one frame (or snapshot), with the Avro fields they all share."""

    kind: str
    items: list[Any]  # list[MiniTicker] or list[Ticker]
    stream: str
    source: str
    connection_id: str | None
    ingest_time_us: int

    def frame_fields(self, stream: str | None = None) -> dict[str, Any]:
        """The shared Avro fields (``FRAME_FIELDS``) of this batch's records."""
        return {"ingest_time": self.ingest_time_us, "source": self.source,
                "stream": self.stream if stream is None else stream, "connection_id": self.connection_id}

    def records(self) -> list[TickerRecord]:
        """The records as Avro dicts (for tests, tools and the fastavro fallback; the hot path never builds them)."""
        shared = self.frame_fields()
        return [TickerRecord(self.kind, item.symbol, item.event_time, avro_value(item, shared))
                for item in self.items]


def avro_value(item: TickerItem, shared: dict[str, Any]) -> dict[str, Any]:
    """A record's Avro dict: its attributes (= Avro field names) plus the frame's shared fields."""
    return msgspec.structs.asdict(item) | shared


class TickerRecord(NamedTuple):
    """A view of one record as its Avro dict (``Batch.records``)."""

    kind: str
    symbol: str
    event_time_ms: int
    value: dict[str, Any]


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
    batches: list[Batch]
    rejects: list[Reject]
    control: dict[str, Any] | None

    @property
    def records(self) -> list[TickerRecord]:
        return [rec for batch in self.batches for rec in batch.records()]


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def _frame_decoder(item: type) -> msgspec.json.Decoder[Any]:
    # The frame types are built at run time from ``item``: a type checker sees only ``Any`` here.
    dynamic: Any = item
    envelope: Any = msgspec.defstruct(f"{item.__name__}Frame", [("stream", str), ("data", list[dynamic] | dynamic)],
                                      gc=False)
    return msgspec.json.Decoder(envelope | list[dynamic])


_DECODERS = [(kind, _frame_decoder(struct).decode) for kind, struct in TYPES.items()]


def _decode_whole(payload: bytes | str) -> tuple[str, str | None, list[Any]] | None:
    """An array frame of one ticker kind, every record valid -> (kind, stream or None, structs); else None.

    A wrong kind fails at the first ticker, so trying both is cheap.
    """
    for kind, decode in _DECODERS:
        try:
            obj = decode(payload)
        except (msgspec.MsgspecError, ValueError, TypeError):  # invalid UTF-8 in a string is a UnicodeError
            continue
        if type(obj) is list:
            stream, items = None, obj
        else:
            data = obj.data
            stream, items = obj.stream, data if type(data) is list else [data]
        ok, decimals_of = DECIMALS_OK[kind], _DECIMALS_OF[kind]
        for item in items:
            if not ok("|".join(decimals_of(item))):
                return None  # decoded item by item, which names the bad decimal
        return kind, stream, items
    return None


def parse_frame(payload: bytes | bytearray | memoryview | str, *, default_stream: str, connection_id: str,
                ingest_time_us: int, max_frame_bytes: int) -> FrameResult:
    """Turn one WebSocket text frame into batches of records, rejects and/or a control reply. Never raises.

    ``default_stream`` names the stream of raw (non-combined) connections; a combined-stream wrapper
    ``{"stream": ..., "data": ...}`` names its own. For ``str`` payloads the size limit counts characters.
    """
    stream = default_stream
    if len(payload) > max_frame_bytes:
        return _frame_reject("frame_too_large", stream, payload, f"{len(payload)} > {max_frame_bytes}")
    if type(payload) is bytes or type(payload) is str:
        whole = _decode_whole(payload)
        if whole is not None:
            kind, named, items = whole
            stream = default_stream if named is None else named
            batches = [Batch(kind, items, stream, "websocket", connection_id, ingest_time_us)] if items else []
            return FrameResult(stream, batches, [], None)
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

    rejects: list[Reject] = []
    if type(obj) is list:
        batches = _decode_items(obj, stream, connection_id, ingest_time_us, "websocket", rejects)
    elif type(obj) is dict:
        batches = _decode_items((obj,), stream, connection_id, ingest_time_us, "websocket", rejects)
        if rejects:  # a single-object frame: dead-letter the frame exactly as received
            rejects = [rejects[0]._replace(raw=_raw_bytes(payload))]
    else:
        return _frame_reject("not_an_object", stream, payload, f"frame is a JSON {type(obj).__name__}")
    return FrameResult(stream, batches, rejects, None)


def snapshot_records(entries: list[dict[str, Any]], *, kinds: set[str], ingest_time_us: int,
                     stream: str = REST_STREAM) -> tuple[list[Batch], list[Reject]]:
    """GET /api/v3/ticker/24hr entries (full or ``type=MINI``) -> batches marked ``rest_snapshot``, one record
    per entry and kind, and the rejects.

    The event time is the entry's ``closeTime``; the REST names become Binance's stream letters
    (``REST_TO_STREAM``) and then the same item decoder as a stream frame's runs, so consumers read one shape
    whatever the source.
    """
    unknown = set(kinds) - set(KIND_EVENT)
    if unknown:
        raise ValueError(f"unknown ticker kinds: {sorted(unknown)}")
    batches: list[Batch] = []
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
        batches += _decode_items(translated, stream, None, ingest_time_us, "rest_snapshot", kind_rejects, entries)
        rejects.extend(r._replace(detail=_rest_names(r.detail)) for r in kind_rejects)
    return batches, rejects


def _rest_names(detail: str) -> str:
    """Name the offending field as REST does (``lastPrice``), not as the stream does (``c``)."""
    key, sep, rest = detail.partition(":")
    return _STREAM_TO_REST.get(key, key) + sep + rest if sep else detail


def _decode_items(items: Sequence[Any], stream: str, connection_id: str | None, ingest_time_us: int,
                  source: str, rejects: list[Reject], originals: Sequence[Any] | None = None) -> list[Batch]:
    """Item by item: each good ticker becomes its struct (batches of consecutive same-kind records), each bad
    one a ``Reject`` naming its first problem. ``originals``: the items as received when ``items`` were
    translated (REST): rejects carry those."""
    batches: list[Batch] = []
    for index, item in enumerate(items):
        try:
            kind, record = _item(item)
        except _Invalid as exc:
            symbol = item.get("s") if type(item) is dict else None
            original = item if originals is None else originals[index]
            rejects.append(Reject(exc.reason, stream, _dumps(original), symbol if type(symbol) is str else None,
                                  exc.detail))
            continue
        if not batches or batches[-1].kind != kind:
            batches.append(Batch(kind, [], stream, source, connection_id, ingest_time_us))
        batches[-1].items.append(record)
    return batches


def _item(item: Any) -> tuple[str, TickerItem]:
    """One decoded JSON value -> (kind, struct); raises ``_Invalid`` naming the first problem. The checks are
    the structs' own (types, long ranges, non-empty symbol, decimal grammar), in the order e, E, s, integers,
    decimals."""
    if type(item) is not dict:
        raise _Invalid("not_an_object", f"expected a JSON object, got {_json_type(item)}")
    event = _field(item, "e", str)
    kind = EVENT_KIND.get(event)
    if kind is None:
        raise _Invalid("unknown_event_type", f"e:{event[:40]}")
    if _field(item, "E", int) < 0:
        raise _Invalid("wrong_type", "E: negative event time")
    if not _field(item, "s", str):
        raise _Invalid("wrong_type", "s: empty symbol")
    decimals, integers = _SPEC[kind]
    for key, _ in integers:
        _field(item, key, int)
    for key, _ in decimals:
        check_decimal(_field(item, key, str), key)
    return kind, TYPES[kind](*[item[letter] for letter in _LETTERS[kind]])


def _field(item: dict[str, Any], key: str, expected: type) -> Any:
    if key not in item:
        raise _Invalid("missing_field", f"{key}:")
    value: Any = item[key]
    if type(value) is not expected:
        raise _Invalid("wrong_type", f"{key}: expected {_json_type(expected())}, got {_json_type(value)}")
    if expected is int and isinstance(value, int) and not LONG_MIN <= value <= LONG_MAX:
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


def symbol_info_value(entry: dict[str, Any], *, first_seen_ms: int, last_seen_ms: int,
                      ingest_time_us: int) -> dict[str, Any]:
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


def _filters(filters: Any) -> list[dict[str, Any]]:
    if type(filters) is not list:
        raise _Invalid("wrong_type", "filters: expected an array")
    out = []
    for f in filters:
        if type(f) is not dict or type(f.get("filterType")) is not str:
            raise _Invalid("wrong_type", "filters: each filter must be an object with a string filterType")
        params = {k: v if type(v) is str else orjson.dumps(v).decode() for k, v in f.items() if k != "filterType"}
        out.append({"filter_type": f["filterType"], "params": params})
    return out
