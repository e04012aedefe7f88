"""Binance stream names: validation, pattern expansion, URLs, and splitting streams over connections.

Everything here is pure (no I/O), so the connection manager and the pipeline share one definition of
what a stream is, what kind of record it carries and how often it pushes.

How a connection gets its streams (the choice, and why): the connect URL carries only as many streams as
fit in ``URL_MAX_CHARS`` characters; the rest are added with ``SUBSCRIBE`` messages of up to
``SUBSCRIBE_CHUNK`` params each, paced by the connection under Binance's 5-messages-per-second limit.
Putting 1,024 streams (~20 KB) into the request line would exceed the request-line limit of common HTTP
front ends (8 KB is typical) and fail the handshake in a way that looks like a network error; sending one
SUBSCRIBE per stream would take 1024 / 5 s ≈ 3.5 minutes. The all-market streams (``!miniTicker@arr``) always
fit in the URL, so the common case needs no SUBSCRIBE at all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote

from ingest.config import ConfigError

ALL_MARKET: dict[str, str] = {"!miniTicker@arr": "miniticker", "!ticker@arr": "ticker"}
"""All-market array streams and the record kind they carry."""

PATTERNS: dict[str, str] = {"@miniTicker": "miniTicker", "@ticker": "ticker"}
"""Patterns meaning 'this stream for every TRADING symbol' -> the per-symbol stream suffix."""

SYMBOL_SUFFIXES: dict[str, str] = {"miniTicker": "miniticker", "ticker": "ticker"}
"""Per-symbol stream suffix -> record kind."""

PUSH_INTERVAL_S: dict[str, float] = {"miniticker": 1.0, "ticker": 1.0}
"""Binance pushes both ticker kinds every 1000 ms (per-symbol streams only when the symbol changed)."""

STALE_PUSH_INTERVALS = 5
"""Automatic stale deadline = this many push intervals of the slowest stream ..."""
STALE_MIN_S = 10.0
"""... but never below this, so one late frame or a GC pause does not cost a reconnect."""

URL_MAX_CHARS = 1500
"""Stream characters put into the connect URL; the rest goes out as SUBSCRIBE (see module docstring)."""
SUBSCRIBE_CHUNK = 200
"""Streams per SUBSCRIBE/UNSUBSCRIBE message (~4 KB of JSON; 1,024 streams need 6 messages)."""
BINANCE_MAX_STREAMS_PER_CONNECTION = 1024

RETIRED_ALL_MARKET: dict[str, tuple[str, str]] = {"!ticker@arr": ("@ticker", "2026-03-26")}
"""All-market streams Binance retired -> (the pattern that serves the same records, retirement date). Binance
still accepts a SUBSCRIBE to ``!ticker@arr`` but never sends on it, so a worker subscribing it literally looks
healthy with an empty topic; by default it is served by its pattern (see :func:`expand`)."""

_SYMBOL = re.compile(r"^[^\W_]{2,50}$")
"""A symbol usable in a stream name: 2-50 letters or digits of any script (Binance lists symbols such as
``币安人生USDT`` since 2025-12). Anything else (``@``, ``/``, spaces, ``%``, emoji...) could not be spelled
unambiguously in a URL, a SUBSCRIBE or a frame's stream name, so such a symbol is skipped, never guessed."""


def normalize(name: str) -> str:
    """Validate one concrete stream name and return its canonical spelling (symbol lower-case).

    Patterns (``@ticker``) are not concrete streams; expand them first with :func:`expand`.
    """
    name = name.strip()
    if name in ALL_MARKET:
        return name
    symbol, sep, suffix = name.partition("@")
    if sep and suffix in SYMBOL_SUFFIXES and _SYMBOL.match(symbol.lower()):
        return f"{symbol.lower()}@{suffix}"
    raise ConfigError(f"unsupported stream {name!r}: use !miniTicker@arr, !ticker@arr, <symbol>@miniTicker, "
                      "<symbol>@ticker or a pattern @ticker / @miniTicker")


def is_pattern(name: str) -> bool:
    return name.strip() in PATTERNS


def needs_exchange_info(streams: Iterable[str], literal_retired: bool = False) -> bool:
    """True when some stream is a pattern (or a retired all-market stream served by one) that only exchangeInfo
    can expand."""
    return any(is_pattern(s) or (not literal_retired and s.strip() in RETIRED_ALL_MARKET) for s in streams)


def subscribable(symbol: str) -> bool:
    """Whether a symbol from exchangeInfo can be spelled as a stream name (see ``_SYMBOL``)."""
    return bool(_SYMBOL.match(symbol.lower()))


def frame_key(name: str) -> str:
    """A frame's stream name in the spelling of :func:`normalize`, lower-cased: Binance may send a stream name
    percent-encoded (``%E5%B8%81...usdt@ticker``), and its case follows the subscription, not ours."""
    if "%" in name:
        name = unquote(name)
    return name.lower()


def kind(stream: str) -> str:
    """Record kind of a concrete stream: ``miniticker`` or ``ticker`` (also the topic suffix)."""
    if stream in ALL_MARKET:
        return ALL_MARKET[stream]
    suffix = stream.rpartition("@")[2]
    try:
        return SYMBOL_SUFFIXES[suffix]
    except KeyError:
        raise ValueError(f"not a ticker stream: {stream!r}") from None


def symbol(stream: str) -> str:
    """The upper-case symbol of a per-symbol stream (``btcusdt@ticker`` -> ``BTCUSDT``), as REST and records
    spell it."""
    return stream.partition("@")[0].upper()


def push_interval_s(stream: str) -> float:
    """How often Binance pushes on this stream (seconds)."""
    return PUSH_INTERVAL_S[kind(stream)]


def stale_deadline_s(streams: Iterable[str], configured_s: float = 0.0) -> float:
    """No frame for this long means the connection is dead. ``configured_s`` > 0 wins; 0 = automatic."""
    if configured_s > 0:
        return configured_s
    slowest = max((push_interval_s(s) for s in streams), default=1.0)
    return max(STALE_MIN_S, STALE_PUSH_INTERVALS * slowest)


def metric_label(stream: str) -> str:
    """Label value for ``ws_messages_total{stream}``: bounded, never one series per symbol.

    All-market streams are their own label; per-symbol streams are labelled by their pattern
    (``btcusdt@ticker`` -> ``@ticker``), because a pattern may expand to thousands of symbols.
    """
    if stream in ALL_MARKET:
        return stream
    suffix = stream.rpartition("@")[2]
    return "@" + suffix if suffix in SYMBOL_SUFFIXES else "other"


def trading_symbols(exchange_info: Mapping[str, Any], quote_assets: Sequence[str] = ()) -> list[str]:
    """Symbols with status TRADING (optionally only those quoted in ``quote_assets``), in exchangeInfo order.
    A malformed entry (not an object, no string symbol) is not a symbol we could stream: it is left out here
    (and dead-lettered where the symbols topic is published)."""
    quotes = {q.upper() for q in quote_assets}
    out = []
    for entry in exchange_info.get("symbols", ()):
        if not isinstance(entry, dict) or entry.get("status") != "TRADING":
            continue
        if quotes and str(entry.get("quoteAsset", "")).upper() not in quotes:
            continue
        if isinstance(entry.get("symbol"), str) and entry["symbol"]:
            out.append(entry["symbol"])
    return out


def expand(streams: Iterable[str], exchange_info: Mapping[str, Any] | None = None,
           quote_assets: Sequence[str] = (), *, literal_retired: bool = False,
           skipped: list[str] | None = None) -> list[str]:
    """Concrete, validated, de-duplicated stream list (order kept): patterns become one stream per
    TRADING symbol, narrowed by ``quote_assets``; a retired all-market stream (``!ticker@arr``) becomes its
    pattern over every TRADING symbol (not narrowed: it meant the whole market), unless ``literal_retired``.

    A configured stream that is not valid raises ConfigError (a typo in the settings). A symbol from
    exchangeInfo that cannot be a stream name never does: it is left out and appended to ``skipped``.
    """
    out: dict[str, None] = {}
    for raw in streams:
        name = raw.strip()
        retired = name in RETIRED_ALL_MARKET and not literal_retired
        if is_pattern(name) or retired:
            if exchange_info is None:
                raise ConfigError(f"stream {name!r} needs exchangeInfo to expand")
            pattern = RETIRED_ALL_MARKET[name][0] if retired else name
            suffix = PATTERNS[pattern]
            for symbol in trading_symbols(exchange_info, () if retired else quote_assets):
                if subscribable(symbol):
                    out[f"{symbol.lower()}@{suffix}"] = None
                elif skipped is not None and symbol not in skipped:
                    skipped.append(symbol)
        else:
            out[normalize(name)] = None
    return list(out)


def split_for_url(streams: Sequence[str], max_chars: int = URL_MAX_CHARS) -> tuple[list[str], list[str]]:
    """(streams in the connect URL, streams to SUBSCRIBE after connecting). At least one goes in the URL:
    Binance needs a stream to open a raw ``/ws`` connection."""
    in_url: list[str] = []
    used = 0
    for i, stream in enumerate(streams):
        cost = len(_url_quote(stream)) + 1  # a non-ASCII symbol costs its percent-encoded length
        if in_url and used + cost > max_chars:
            return in_url, list(streams[i:])
        in_url.append(stream)
        used += cost
    return in_url, []


def build_url(base: str, streams: Sequence[str], combined: bool) -> str:
    """Connect URL: combined ``<base>/stream?streams=a/b`` (frames wrapped in ``{"stream":..,"data":..}``)
    or raw ``<base>/ws/a/b`` (frames as Binance sends them, no stream name)."""
    if not streams:
        raise ValueError("a connection needs at least one stream in its URL")
    base = base.rstrip("/")
    joined = "/".join(_url_quote(s) for s in streams)
    return f"{base}/stream?streams={joined}" if combined else f"{base}/ws/{joined}"


def _url_quote(stream: str) -> str:
    """A stream name as it goes into a URL: UTF-8 percent-encoded except the ``@``/``!`` Binance reads as is."""
    return quote(stream, safe="@!")


def chunks(streams: Sequence[str], size: int = SUBSCRIBE_CHUNK) -> list[list[str]]:
    """Params of consecutive SUBSCRIBE/UNSUBSCRIBE messages."""
    return [list(streams[i:i + size]) for i in range(0, len(streams), size)]


def usable_connections(max_connections: int) -> int:
    """Connections that may carry streams: one slot stays free for make-before-break rotation, so a
    rotation never holds more than ``max_connections`` at once. With a single allowed connection there
    is no spare slot and rotation becomes break-then-make (the REST snapshot on reconnect covers it)."""
    return max_connections - 1 if max_connections > 1 else 1


def plan_connections(streams: Sequence[str], max_per_connection: int, max_connections: int) -> list[list[str]]:
    """Split streams into the fewest connections, balanced in size; ConfigError when they cannot fit."""
    if not 1 <= max_per_connection <= BINANCE_MAX_STREAMS_PER_CONNECTION:
        raise ConfigError("--max-streams-per-connection must be between 1 and 1024 (Binance's limit)")
    if not streams:
        raise ConfigError("no streams to subscribe (did the patterns match no TRADING symbol?)")
    usable = usable_connections(max_connections)
    needed = math.ceil(len(streams) / max_per_connection)
    if needed > usable:
        spare = " (one of --max-connections is kept free for rotation)" if max_connections > 1 else ""
        raise ConfigError(f"{len(streams)} streams need {needed} connections of at most {max_per_connection} "
                          f"streams, but only {usable} may be used{spare}")
    size = math.ceil(len(streams) / needed)
    return [list(streams[i:i + size]) for i in range(0, len(streams), size)]


def combined_stream_name(frame: str | bytes) -> str | None:
    """The stream name of a combined-stream frame from its prefix, without parsing the JSON.

    ``{"stream":"btcusdt@ticker","data":{...}}`` -> ``btcusdt@ticker``. None when the frame does not start
    that way (raw frames, control responses, garbage): the parser decides what those are.
    """
    if isinstance(frame, bytes | bytearray):
        colon = frame.find(b":", 9, 20) if frame[:9] == b'{"stream"' else -1
        if colon < 0:
            return None
        q1 = frame.find(b'"', colon + 1)
        q2 = frame.find(b'"', q1 + 1)
        return frame[q1 + 1:q2].decode("utf-8", "replace") if 0 <= q1 < q2 <= 200 else None
    colon = frame.find(":", 9, 20) if frame[:9] == '{"stream"' else -1
    if colon < 0:
        return None
    q1 = frame.find('"', colon + 1)
    q2 = frame.find('"', q1 + 1)
    return frame[q1 + 1:q2] if 0 <= q1 < q2 <= 200 else None
