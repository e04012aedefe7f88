"""Avro binary pieces as ``str`` code points 0-255 (one per byte), for the generated writers (ingest/avro_writers.py).

Why code points: a record is written as ONE ``"".join(pieces).encode("latin-1")``: no BytesIO, no per-field
calls for strings, and the Confluent prefix is the first piece of the same join, so framing copies nothing.
Avro for flat records is simple: a long is a zigzag varint, a string its UTF-8 length (a long) then its bytes,
an enum its index, a union its branch index then the value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CACHE_MAX = 8192
LENGTH_CHAR = tuple(chr(n << 1) for n in range(64))
"""The one-byte Avro length of a string of 0..63 ASCII characters, as a code point (zigzag doubles it)."""

_LAST_1 = tuple(chr(n) for n in range(0x80))
_LAST_2 = tuple(chr((n & 0x7F) | 0x80) + chr(n >> 7) for n in range(0x4000))
_MORE_2 = tuple(chr((n & 0x7F) | 0x80) + chr((n >> 7) | 0x80) for n in range(0x4000))
"""Varint bytes of 7 or 14 bits as code points: the last group of a number, or two groups with more to come.
Writing 14 bits per table read halves the Python work of a long (trade ids and times miss any cache)."""


def varint(n: int) -> str:
    """A non-negative int as an unsigned LEB128 varint, one code point per byte."""
    if n < 0x80:
        return _LAST_1[n]
    out = ""
    while n >= 0x4000:
        out += _MORE_2[n & 0x3FFF]
        n >>= 14
    return out + (_LAST_2[n] if n >= 0x80 else _LAST_1[n])


def long_writer() -> Callable[[int], str]:
    """Zigzag-varint writer that remembers recent values: event/open/close times repeat within a frame."""
    cache: dict[int, str] = {}

    def write(n: int) -> str:
        text = cache.get(n)
        if text is None:
            text = varint((n << 1) ^ (n >> 63))
            if len(cache) >= CACHE_MAX:
                cache.clear()
            cache[n] = text
        return text
    return write


def string_writer() -> Callable[[str], str]:
    """Length + UTF-8 bytes of a string, remembered: symbols repeat in every frame (any text, any length)."""
    cache: dict[str, str] = {}

    def write(text: str) -> str:
        out = cache.get(text)
        if out is None:
            out = piece("string", text)
            if len(cache) >= CACHE_MAX:
                cache.clear()
            cache[text] = out
        return out
    return write


def piece(ftype: Any, value: Any) -> str:
    """One field's Avro bytes as code points (string, long, enum, ``["null", "string"]``), any UTF-8 text."""
    base = ftype.get("type") if isinstance(ftype, dict) else ftype
    if ftype == ["null", "string"]:
        return "\x00" if value is None else "\x02" + piece("string", value)
    if base == "string":
        if type(value) is not str:
            raise TypeError(f"not a string: {value!r}")
        data = value.encode("utf-8")
        return varint(len(data) << 1) + data.decode("latin-1")
    if base == "long":
        if type(value) is not int or not -(1 << 63) <= value < (1 << 63):
            raise TypeError(f"not an Avro long: {value!r}")
        return varint((value << 1) ^ (value >> 63))
    if base == "enum":
        return varint(ftype["symbols"].index(value) << 1)
    raise TypeError(f"unsupported field type: {ftype!r}")
