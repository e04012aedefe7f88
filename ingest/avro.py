"""Avro for the worker: load schemas/ once, register them in the Schema Registry, encode with Confluent framing.

Why it looks like this:

* Schemas are files (schemas/*.avsc) so they are reviewed like code and checked in CI with
  ``ingest schemas check``. They are read and ``fastavro.parse_schema``-d once per process.
* The registry speaks the Confluent API (Confluent or Apicurio's ``/apis/ccompat/v7``); subjects follow
  TopicNameStrategy (``<topic>-value``) with BACKWARD compatibility, so Java/Kafka Streams consumers with
  stock Confluent deserializers read our records.
* Encoding is the hot path: an ``Encoder`` holds the parsed schema, the precomputed 5-byte prefix
  (magic byte 0 + big-endian schema id) and one reused buffer; ``encode`` does no schema work at all.
  Flat records (strings, longs, enums, optional strings: our ticker schemas) go through ``flat_writer``,
  a function generated once per schema, ~3x cheaper than ``fastavro.schemaless_writer`` per record
  (docs/performance.md); anything it does not handle falls back to fastavro, so the bytes and the errors
  stay fastavro's.
* A registry that is down at start must not crash-loop the pod: ``retry_with_backoff`` keeps trying with
  capped exponential backoff and full jitter, logging one clear line per attempt. Errors the registry
  answers on purpose (incompatible schema, bad credentials) are not retried: retrying cannot fix them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from ingest.backoff import Backoff
from ingest.config import ConfigError

try:  # the HTTP library confluent-kafka's registry client uses: httpx2 when installed, else httpx
    import httpx2 as _http
except ImportError:  # pragma: no cover - depends on the installed confluent-kafka
    import httpx as _http

log = logging.getLogger(__name__)

# ingest/schemas is a symlink to the top-level schemas/, so the files ship inside the wheel as package data.
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SCHEMA_FILES = {"miniticker": "MiniTicker.avsc", "ticker": "Ticker.avsc", "symbols": "SymbolInfo.avsc"}
"""Topic kind -> the value schema registered for it. DeadLetter.avsc is documentation only (docs/schemas.md):
the dead-letter topic carries raw bytes."""
COMPATIBILITY = "BACKWARD"
MAGIC_BYTE = 0

T = TypeVar("T")


@cache
def load_schema(kind: str) -> dict:
    """The JSON of a kind's schema file (``miniticker``, ``ticker``, ``symbols``), read once."""
    try:
        name = SCHEMA_FILES[kind]
    except KeyError:
        raise ValueError(f"no schema for topic kind {kind!r}; known: {', '.join(SCHEMA_FILES)}") from None
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


@cache
def parsed_schema(kind: str) -> dict:
    """The fastavro-parsed schema of a kind, parsed once per process."""
    return fastavro.parse_schema(load_schema(kind))


def subject_for(topic: str) -> str:
    """TopicNameStrategy: the value schema of ``topic`` lives under ``<topic>-value``."""
    return f"{topic}-value"


class Encoder:
    """Encode records of one schema into Confluent-framed Avro; one instance per topic, reused forever.

    Not thread-safe (one shared buffer): the worker encodes on its event loop thread only.
    """

    def __init__(self, schema: dict, schema_id: int) -> None:
        if not 0 <= schema_id < 2**31:
            raise ValueError(f"schema id out of range: {schema_id}")
        self.schema = schema if "__fastavro_parsed" in schema else fastavro.parse_schema(schema)
        self.schema_id = schema_id
        self.prefix = bytes([MAGIC_BYTE]) + schema_id.to_bytes(4, "big")
        self._buffer = BytesIO()
        self._flat = flat_writer(self.schema, self.prefix)

    def encode(self, value: dict) -> bytes:
        """One record -> ``0x00 | schema id (4 bytes, big endian) | Avro binary body``."""
        if self._flat is not None:
            try:
                return self._flat(value)
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError):
                pass  # an unusual value: fastavro encodes it the standard way or raises the error callers expect
        return self._fastavro(value)

    def _fastavro(self, value: dict) -> bytes:
        buf = self._buffer
        buf.seek(0)
        buf.truncate()
        buf.write(self.prefix)
        fastavro.schemaless_writer(buf, self.schema, value)
        return buf.getvalue()

    def encode_many(self, values: list[dict]) -> list[bytes]:
        """Encode a whole frame's records in one call (no per-record method lookups)."""
        encode = self.encode
        return [encode(value) for value in values]


# ----- the flat-record fast path -----
# Avro binary is simple for flat records: a long is a zigzag varint, a string is its UTF-8 length (a long)
# then its bytes, an enum its index, a union its branch index then the value. ``flat_writer`` generates,
# once per schema, one function that reads every field and joins the pieces as a ``str`` of code points
# 0-255 (one per byte), then encodes it with latin-1: no BytesIO, no per-field calls for strings, and the
# Confluent prefix is the first piece of the same join, so framing copies nothing. The generated source is
# kept on the function (``write.source``) for reading and debugging.
_VARINT_CACHE_MAX = 8192
_LENGTH_CHAR = tuple(chr(n << 1) for n in range(64))
"""The one-byte Avro length of a string of 0..63 ASCII characters, as a code point (zigzag doubles it)."""


_LAST_1 = tuple(chr(n) for n in range(0x80))
_LAST_2 = tuple(chr((n & 0x7F) | 0x80) + chr(n >> 7) for n in range(0x4000))
_MORE_2 = tuple(chr((n & 0x7F) | 0x80) + chr((n >> 7) | 0x80) for n in range(0x4000))
"""Varint bytes of 7 or 14 bits as code points: the last group of a number, or two groups with more to come.
Writing 14 bits per table read halves the Python work of a long (trade ids and times miss any cache)."""


def _varint(n: int) -> str:
    """A non-negative int as an unsigned LEB128 varint, one code point per byte."""
    if n < 0x80:
        return _LAST_1[n]
    out = ""
    while n >= 0x4000:
        out += _MORE_2[n & 0x3FFF]
        n >>= 14
    return out + (_LAST_2[n] if n >= 0x80 else _LAST_1[n])


def _long_writer() -> Callable[[Any], str]:
    """Zigzag-varint writer; remembers recent values because event/open/close/ingest times repeat in a frame."""
    cache: dict[int, str] = {}

    def write(n: Any) -> str:
        text = cache.get(n)
        if text is None:
            if type(n) is not int or not -(1 << 63) <= n < (1 << 63):  # bool, float, datetime: fastavro's job
                raise TypeError("not an Avro long")
            text = _varint((n << 1) ^ (n >> 63))
            if len(cache) >= _VARINT_CACHE_MAX:
                cache.clear()
            cache[n] = text
        return text
    return write


def flat_writer(schema: dict, prefix: bytes) -> Callable[[dict], bytes] | None:
    """A fast ``value -> prefix + Avro body`` for records whose fields are all string, long (any logical
    type), enum or ``["null", "string"]``; None for any other schema.

    It covers the usual case only: ASCII strings shorter than 64 characters (every decimal, symbol and stream
    name). On anything else it raises (ValueError for non-ASCII text, IndexError for a long string, KeyError,
    TypeError...) and ``Encoder`` lets fastavro write it."""
    if schema.get("type") != "record":
        return None
    env: dict[str, Any] = {"C": _LENGTH_CHAR, "HEAD": prefix.decode("latin-1")}
    reads, texts, pieces = [], [], ["HEAD"]
    for i, field in enumerate(schema["fields"]):
        ftype, name = field["type"], repr(field["name"])
        base = ftype.get("type") if isinstance(ftype, dict) else ftype
        if base == "string" and not (isinstance(ftype, dict) and ftype.get("logicalType")):
            reads.append(f"f{i} = value[{name}]")
            texts.append(f"f{i}")
            pieces += [f"C[len(f{i})]", f"f{i}"]
        elif base == "long":
            env[f"L{i}"] = _long_writer()
            pieces.append(f"L{i}(value[{name}])")
        elif base == "enum" and len(ftype["symbols"]) <= 64:  # indexes up to 63 are one varint byte
            env[f"E{i}"] = {sym: chr(k << 1) for k, sym in enumerate(ftype["symbols"])}
            pieces.append(f"E{i}[value[{name}]]")
        elif ftype == ["null", "string"]:
            reads.append(f"f{i} = value[{name}]")
            texts.append(f"f{i} or ''")
            pieces.append(f"'\\x00' if f{i} is None else '\\x02' + C[len(f{i})] + f{i}")
        else:
            return None
    source = "\n    ".join([
        "def write(value):", *reads,
        f"if not ''.join(({', '.join(texts)},)).isascii():",  # join raises TypeError for a non-string
        "    raise ValueError('non-ASCII text: fastavro encodes it')",
        f"return ''.join(({', '.join(pieces)},)).encode('latin-1')"])
    exec(compile(source, f"<flat_writer {schema.get('name')}>", "exec"), env)  # noqa: S102 - our own source
    write = env["write"]
    write.source = source
    return write


def _piece(ftype: Any, value: Any) -> str:
    """One field's Avro bytes as code points (string, long, enum, ``["null", "string"]``), any UTF-8 text."""
    base = ftype.get("type") if isinstance(ftype, dict) else ftype
    if ftype == ["null", "string"]:
        return "\x00" if value is None else "\x02" + _piece("string", value)
    if base == "string":
        data = value.encode("utf-8")
        return _varint(len(data) << 1) + data.decode("latin-1")
    if base == "long":
        if type(value) is not int or not -(1 << 63) <= value < (1 << 63):
            raise TypeError(f"not an Avro long: {value!r}")
        return _varint((value << 1) ^ (value >> 63))
    if base == "enum":
        return _varint(ftype["symbols"].index(value) << 1)
    raise TypeError(f"unsupported field type: {ftype!r}")


def _string_writer() -> Callable[[str], str]:
    """Length + UTF-8 bytes of a string, remembered: symbols repeat in every frame (any text, any length)."""
    cache: dict[str, str] = {}

    def write(text: str) -> str:
        piece = cache.get(text)
        if piece is None:
            if type(text) is not str:
                raise TypeError("not a string")
            piece = _piece("string", text)
            if len(cache) >= _VARINT_CACHE_MAX:
                cache.clear()
            cache[text] = piece
        return piece
    return write


class StructWriter:
    """Avro for typed structs (``ingest.binance.events.FastTicker``...): ``write(struct, tail)`` -> framed bytes.

    Why: a frame's records share everything but the exchange's fields, so the fields that are the same for a
    whole frame (ingest time, source, stream, connection id: the schema's last fields) are encoded once per
    frame by ``tail(values)``, and constants (the event type) once per process. Per record, the generated
    ``write`` reads the struct's attributes, runs ``check`` over the joined ``checked`` strings (the decimal
    grammar: it must accept only ASCII text shorter than 64 characters, which makes each length one byte) and
    joins the pieces in one call. A failed check raises ValueError: the caller takes the slow path. Long
    attributes must be ints in the Avro long range (the structs' types say so): they are not checked again.
    """

    def __init__(self, schema: dict, prefix: bytes, attributes: Sequence[str], constants: Mapping[str, Any],
                 checked: Sequence[str], check: Callable[[str], Any]) -> None:
        fields = schema["fields"]
        names = [f["name"] for f in fields]
        first_tail = next((i for i, n in enumerate(names) if n not in attributes and n not in constants), len(names))
        if any(n in attributes or n in constants for n in names[first_tail:]):
            raise ValueError("per-frame fields must be the schema's last fields")
        if not set(checked) <= set(attributes):
            raise ValueError("checked fields must be struct attributes")
        self.tail_fields = fields[first_tail:]
        env: dict[str, Any] = {"C": _LENGTH_CHAR, "CHECK": check}
        reads, pieces, literal = [], [], prefix.decode("latin-1")
        for i, f in enumerate(fields[:first_tail]):
            ftype, name = f["type"], f["name"]
            if name in constants:
                literal += _piece(ftype, constants[name])
                continue
            if literal:
                env[f"K{i}"] = literal
                pieces.append(f"K{i}")
                literal = ""
            base = ftype.get("type") if isinstance(ftype, dict) else ftype
            if base == "long" and isinstance(ftype, dict) and ftype.get("logicalType"):  # times repeat in a frame
                env[f"L{i}"] = _long_writer()
                pieces.append(f"L{i}(r.{name})")
            elif base == "long":  # ids and counts rarely repeat: no cache; structs hold ints in range already
                env["V"] = _varint
                reads.append(f"n{i} = r.{name}")
                pieces.append(f"V((n{i} << 1) ^ (n{i} >> 63))")
            elif base == "string" and name in checked:
                reads.append(f"f{i} = r.{name}")
                pieces += [f"C[len(f{i})]", f"f{i}"]
            elif base == "string":
                env[f"S{i}"] = _string_writer()
                pieces.append(f"S{i}(r.{name})")
            else:
                raise ValueError(f"field {name}: only long and string fields can come from the struct")
        if literal:
            env["K_END"] = literal
            pieces.append("K_END")
        checked_vars = [f"f{i}" for i, f in enumerate(fields[:first_tail]) if f["name"] in checked]
        source = "\n    ".join([
            "def write(r, tail):", *reads,
            f"joined = '|'.join(({', '.join(checked_vars)},))",
            "if not (CHECK(joined) and joined.isascii()):",
            "    raise ValueError('a checked field failed its check')",
            f"return ''.join(({', '.join(pieces)}, tail)).encode('latin-1')"])
        exec(compile(source, f"<struct_writer {schema.get('name')}>", "exec"), env)  # noqa: S102 - our own source
        self.write: Callable[[Any, str], bytes] = env["write"]
        self.source = source

    def tail(self, values: Mapping[str, Any]) -> str:
        """The per-frame fields' bytes (as code points), computed once per frame and passed to ``write``."""
        return "".join(_piece(f["type"], values[f["name"]]) for f in self.tail_fields)


def split_framing(data: bytes) -> tuple[int, bytes]:
    """Confluent-framed bytes -> (schema id, Avro body); raises ValueError if the framing is wrong."""
    if len(data) < 5 or data[0] != MAGIC_BYTE:
        raise ValueError("not Confluent-framed Avro (magic byte 0 + 4-byte schema id expected)")
    return int.from_bytes(data[1:5], "big"), data[5:]


def make_client(url: str, user_info: str = "", *, max_retries: int = 1) -> SchemaRegistryClient:
    """A registry client; few internal retries because ``retry_with_backoff`` owns the waiting and logging."""
    conf: dict[str, Any] = {"url": url, "max.retries": max_retries, "retries.wait.ms": 200,
                            "retries.max.wait.ms": 1000}
    if user_info:
        if ":" not in user_info:
            raise ConfigError("--schema-registry-user-info must be 'user:password'")
        conf["basic.auth.user.info"] = user_info
    return SchemaRegistryClient(conf)


def schema_for_registry(schema: dict) -> Schema:
    return Schema(json.dumps(schema, separators=(",", ":")), "AVRO")


def register_schemas(client: SchemaRegistryClient, topic_for_kind: dict[str, str],
                     schemas: Mapping[str, dict] | None = None) -> dict[str, Encoder]:
    """Set BACKWARD on each ``<topic>-value`` subject, register the local schema, return an Encoder per kind.

    Registering an identical schema again returns the existing id, so this is safe on every start. The
    compatibility level is set first so that a changed schema is checked against BACKWARD, whatever the
    registry's global default is. ``schemas`` (kind -> schema JSON) replaces the files, e.g. in tests.
    """
    encoders: dict[str, Encoder] = {}
    for kind, topic in topic_for_kind.items():
        subject = subject_for(topic)
        client.set_compatibility(subject_name=subject, level=COMPATIBILITY)
        if schemas is None or kind not in schemas:
            schema_id = client.register_schema(subject, schema_for_registry(load_schema(kind)))
            encoders[kind] = Encoder(parsed_schema(kind), schema_id)
        else:
            schema_id = client.register_schema(subject, schema_for_registry(schemas[kind]))
            encoders[kind] = Encoder(fastavro.parse_schema(schemas[kind]), schema_id)
        log.info("schema for %s registered under %s with id %d (compatibility %s)",
                 kind, subject, schema_id, COMPATIBILITY)
    return encoders


@dataclass(frozen=True)
class CompatibilityResult:
    kind: str
    subject: str
    status: str  # "compatible" | "incompatible" | "new"

    @property
    def ok(self) -> bool:
        return self.status != "incompatible"


def check_compatibility(client: SchemaRegistryClient, topic_for_kind: dict[str, str],
                        schemas: Mapping[str, dict] | None = None) -> list[CompatibilityResult]:
    """Ask the registry whether each local schema may be registered under its subject (latest version).

    A subject the registry does not know yet is ``new``: registering it cannot break anyone. ``schemas``
    (kind -> schema JSON) replaces the files.
    """
    results = []
    for kind, topic in topic_for_kind.items():
        subject = subject_for(topic)
        try:
            client.get_versions(subject)  # some registries (Apicurio) answer "compatible" for unknown subjects
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:
                raise
            results.append(CompatibilityResult(kind, subject, "new"))
            continue
        schema = schemas[kind] if schemas is not None and kind in schemas else load_schema(kind)
        compatible = client.test_compatibility(subject, schema_for_registry(schema), version="latest")
        status = "compatible" if compatible else "incompatible"
        results.append(CompatibilityResult(kind, subject, status))
    return results


def is_retryable(exc: BaseException) -> bool:
    """Worth retrying: the registry is unreachable or failing (5xx), not refusing us on purpose (4xx)."""
    if isinstance(exc, _http.TransportError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, SchemaRegistryError):
        return exc.http_status_code in (-1, 408, 429) or exc.http_status_code >= 500
    return False


def retry_with_backoff(fn: Callable[[], T], *, what: str, initial_s: float = 1.0, max_s: float = 60.0,
                       deadline_s: float | None = None, sleep: Callable[[float], None] = time.sleep,
                       retryable: Callable[[BaseException], bool] = is_retryable) -> T:
    """Call ``fn`` until it succeeds; retry only ``retryable`` errors, with capped exponential backoff.

    ``deadline_s`` (None = forever) bounds the total time; then the last error is raised.
    """
    backoff = Backoff(initial_s, max_s)
    start = time.monotonic()
    while True:
        try:
            return fn()
        except Exception as exc:
            sleep(_next_wait(exc, what, backoff, start, deadline_s, retryable))


async def retry_with_backoff_async(fn: Callable[[], T], *, what: str, initial_s: float = 1.0,
                                   max_s: float = 60.0, deadline_s: float | None = None,
                                   sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                                   retryable: Callable[[BaseException], bool] = is_retryable) -> T:
    """``retry_with_backoff`` for the event loop: ``fn`` (blocking registry or admin calls) runs in a thread."""
    backoff = Backoff(initial_s, max_s)
    start = time.monotonic()
    while True:
        try:
            return await asyncio.to_thread(fn)
        except Exception as exc:
            await sleep(_next_wait(exc, what, backoff, start, deadline_s, retryable))


def _next_wait(exc: Exception, what: str, backoff: Backoff, start: float, deadline_s: float | None,
               retryable: Callable[[BaseException], bool]) -> float:
    """The delay before the next attempt, or re-raise ``exc`` when retrying cannot help or time is up."""
    if not retryable(exc):
        raise exc
    wait = backoff.next_delay()  # full jitter: spreads the restarts of many pods
    if deadline_s is not None and time.monotonic() - start + wait > deadline_s:
        raise exc
    log.warning("%s failed (attempt %d): %s: %s; retrying in %.1f s",
                what, backoff.attempt, type(exc).__name__, exc, wait)
    return wait
