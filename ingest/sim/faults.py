"""Fault injection: malformed frame builders and the parsing of fault specs (control API and --fault).

Malformed frames are built from a real current ticker, so each one differs from a good frame by exactly
the defect named by its kind; they reuse the symbol's last event time and never advance the market.
"""

from __future__ import annotations

from typing import Any

import orjson

MALFORMED_KINDS = ("invalid_json", "wrong_types", "missing_fields", "oversized", "invalid_utf8", "excess_decimals",
                   "unknown_event")
FAULT_TYPES = ("close", "silence", "slow", "malformed", "duplicate", "rest", "expire", "server_shutdown", "handshake")
REST_FAULT_STATUSES = (403, 418, 429, 451)  # and any 5xx
DEFAULT_OVERSIZED_BYTES = 2 * 1024 * 1024  # above websockets' default max_size of 1 MiB


class FaultError(ValueError):
    """A fault request that cannot be carried out; answered with HTTP 400 and this message."""


def malformed_payload(kind: str, ticker_json: str, is_array: bool, size: int = DEFAULT_OVERSIZED_BYTES) -> str | bytes:
    """The payload (as a raw-stream client would receive it) for one malformed frame of ``kind``."""
    obj: dict[str, Any] = orjson.loads(ticker_json)
    if kind == "invalid_json":
        text = ("[" + ticker_json + "]") if is_array else ticker_json
        return text[:-7] + ',"c":}'
    if kind == "wrong_types":
        obj["c"] = float(obj["c"])  # a JSON number where Binance sends a decimal string
        obj["E"] = str(obj["E"])  # a string where Binance sends an integer
    elif kind == "missing_fields":
        obj.pop("c", None)
        obj.pop("v", None)
    elif kind == "unknown_event":
        obj["e"] = "24hrMysteryTicker"  # an event type the client has never heard of
    elif kind == "excess_decimals":
        obj["c"] = obj["c"] + "0" * 30 + "1"  # 30+ decimals: more than any Avro/Decimal scale we would pick
    elif kind == "invalid_utf8":
        body = ticker_json.replace('"e":"', '"e":"\udcff', 1).encode("utf-8", "surrogateescape")
        return (b"[" + body + b"]") if is_array else body
    elif kind == "oversized":
        copies = max(1, size // len(ticker_json) + 1)
        return "[" + ",".join([ticker_json] * copies) + "]"
    else:
        raise FaultError(f"unknown malformed kind {kind!r}; one of {', '.join(MALFORMED_KINDS)}")
    text = orjson.dumps(obj).decode()
    return ("[" + text + "]") if is_array else text


def wrap_combined(stream: str, payload: str | bytes) -> str | bytes:
    """The combined-stream envelope around a payload, keeping its bytes (even invalid ones) intact."""
    if isinstance(payload, bytes):
        return b'{"stream":' + orjson.dumps(stream) + b',"data":' + payload + b"}"
    return '{"stream":' + orjson.dumps(stream).decode() + ',"data":' + payload + "}"


def coerce(value: str) -> Any:
    """Query-string values: integers and floats become numbers, everything else stays a string."""
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


def parse_cli_fault(spec: str) -> dict[str, Any]:
    """'close:code=1006,every=30' -> {'type': 'close', 'code': 1006, 'every': 30} (for --fault)."""
    kind, _, rest = spec.partition(":")
    fault: dict[str, Any] = {"type": kind.strip()}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise FaultError(f"bad --fault part {part!r}: expected key=value")
        fault[key.strip()] = coerce(value.strip())
    if fault["type"] not in FAULT_TYPES:
        raise FaultError(f"unknown fault type {fault['type']!r}; one of {', '.join(FAULT_TYPES)}")
    return fault
