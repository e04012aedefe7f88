"""Replay of recorded frames from JSON Lines, byte for byte.

A line is either one raw text frame exactly as a client received it (a raw-stream payload, or a combined
``{"stream": ..., "data": ...}`` envelope), or ``{"stream": "...", "frame": "..."}`` where ``frame`` is the
payload text. The bytes of the payload are never re-encoded: a raw-stream client receives them as they
are, a combined-stream client receives them inside an envelope. A line that is not JSON at all is sent
as it is to every client (that is how a recorded broken frame is replayed). Timing follows the frames'
event time ``E`` (optionally sped up) or runs as fast as possible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

# event type -> suffix of the per-symbol stream name that carries it
EVENT_STREAMS = {"24hrMiniTicker": "miniTicker", "24hrTicker": "ticker", "aggTrade": "aggTrade", "trade": "trade"}
ARRAY_STREAMS = {"24hrMiniTicker": "!miniTicker@arr", "24hrTicker": "!ticker@arr"}
TICKER_KINDS = {"24hrMiniTicker": "miniticker", "24hrTicker": "ticker"}


@dataclass(slots=True)
class ReplayFrame:
    """One recorded frame: its stream (None = every client), the payload and the combined form."""

    stream: str | None
    raw: str
    combined: str
    event_time: int | None
    data: Any  # the parsed payload, for the sent-log and the REST state


def infer_stream(data: Any) -> str | None:
    """Which stream a raw payload belongs to, from its content (None when it cannot be told)."""
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return ARRAY_STREAMS.get(data[0].get("e", ""))
    if isinstance(data, dict):
        symbol = str(data.get("s", "")).lower()
        event = data.get("e")
        if event in EVENT_STREAMS and symbol:
            return f"{symbol}@{EVENT_STREAMS[event]}"
        if event == "kline" and symbol and isinstance(data.get("k"), dict):
            return f"{symbol}@kline_{data['k'].get('i', '1m')}"
        if event is None and symbol and {"b", "B", "a", "A"} <= data.keys():
            return f"{symbol}@bookTicker"
    return None


def event_time(data: Any) -> int | None:
    if isinstance(data, dict) and isinstance(data.get("E"), int):
        event: int = data["E"]
        return event
    if isinstance(data, list):
        times = [item["E"] for item in data if isinstance(item, dict) and isinstance(item.get("E"), int)]
        return max(times) if times else None
    return None


def _unwrap(text: str, envelope: dict[str, Any]) -> str:
    """The ``data`` part of a combined envelope as the exact bytes it had in the envelope."""
    prefix = '{"stream":' + orjson.dumps(envelope["stream"]).decode() + ',"data":'
    if text.startswith(prefix) and text.endswith("}"):
        inner = text[len(prefix):-1]
        try:
            if orjson.loads(inner) == envelope["data"]:
                return inner
        except orjson.JSONDecodeError:
            pass
    return orjson.dumps(envelope["data"]).decode()


def _wrap(stream: str | None, payload: str) -> str:
    if stream is None:
        return payload
    return '{"stream":' + orjson.dumps(stream).decode() + ',"data":' + payload + "}"


def parse_line(line: str) -> ReplayFrame:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return ReplayFrame(None, line, line, None, None)
    if isinstance(obj, dict) and obj.keys() == {"stream", "frame"} and isinstance(obj["frame"], str):
        stream, payload = obj["stream"], obj["frame"]
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return ReplayFrame(stream, payload, _wrap(stream, payload), None, None)
        if isinstance(data, dict) and data.keys() == {"stream", "data"}:
            return ReplayFrame(stream, _unwrap(payload, data), payload, event_time(data["data"]), data["data"])
        return ReplayFrame(stream, payload, _wrap(stream, payload), event_time(data), data)
    if isinstance(obj, dict) and obj.keys() == {"stream", "data"} and isinstance(obj["stream"], str):
        return ReplayFrame(obj["stream"], _unwrap(line, obj), line, event_time(obj["data"]), obj["data"])
    stream = infer_stream(obj)
    return ReplayFrame(stream, line, _wrap(stream, line), event_time(obj), obj)


def load(path: str | Path) -> list[ReplayFrame]:
    """Every non-empty line of the file; only the line ending is removed (never other whitespace)."""
    frames = []
    with Path(path).open(encoding="utf-8", newline="") as handle:
        for line in handle:
            text = line.removesuffix("\n").removesuffix("\r")
            if text:
                frames.append(parse_line(text))
    return frames


def tickers_in(data: Any) -> list[dict[str, Any]]:
    """The ticker objects (mini or full) a payload carries, for the sent-log and REST state."""
    items = data if isinstance(data, list) else [data]
    return [item for item in items if isinstance(item, dict) and item.get("e") in TICKER_KINDS]
