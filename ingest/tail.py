"""``ingest tail TOPIC``: print what is in a topic, decoded, as JSON lines or a table (kcat for this project).

Why its own command: the records are Confluent-framed Avro (magic byte 0, 4-byte schema id, Avro body), so a
generic console consumer prints binary. tail resolves each schema id in the registry once (cached), decodes
with the writer's schema, and prints one JSON object per record; on a terminal it prints an aligned table
instead. The dead-letter topic carries the raw payload that failed, with the reason in headers: tail prints
the headers and the payload as text.

It reads with ``assign`` at explicit offsets and never joins a consumer group or commits, so tailing leaves
no trace on the cluster and cannot steal partitions from anyone. The end offsets are read before it says it
is reading, so a record produced after that line is always printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

import fastavro
import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from ingest import avro
from ingest import config as config_mod
from ingest.config import ConfigError, Settings
from ingest.kafka.topics import KINDS, client_config

OPTIONS = ("bootstrap_servers", "schema_registry_url", "schema_registry_user_info", "topic_prefix",
           "kafka_properties_file")
METADATA_TIMEOUT_S = 10.0

_QUIET = logging.getLogger("ingest.tail.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
"""librdkafka's own log lines would interleave with the records on the terminal."""

TABLE_FIELDS = ("close_price", "price_change_percent", "open_price", "high_price", "low_price", "base_volume",
                "quote_volume", "status", "base_asset", "quote_asset")
"""Value fields shown as table columns, when the record has them (a full Ticker has 25 fields)."""
TABLE_HEADER_EVERY = 40
MIN_WIDTHS = {"key": 12, "payload": 0, **{name: 16 for name in TABLE_FIELDS}}
"""Room for usual symbols and decimals from the first row on, so a streamed table rarely has to widen."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", help="a topic, or a kind (miniticker, ticker, symbols, deadletter) that means "
                                      "<topic prefix>.<kind>")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest record, not the end")
    parser.add_argument("--max", type=int, dest="max_records", metavar="N",
                        help="stop after printing N records")
    parser.add_argument("--key", metavar="SYMBOL", help="only records with this key (symbol; case-insensitive)")
    parser.add_argument("--format", choices=("auto", "json", "table"), default="auto", type=str.lower,
                        help="json lines, an aligned table, or auto: a table on a terminal [default auto]")
    parser.add_argument("--exit-at-end", action="store_true",
                        help="stop at the end of the topic as it was at start, instead of waiting for more")
    config_mod.add_arguments(parser, names=OPTIONS)


def main(args: argparse.Namespace) -> int:
    settings = config_mod.load(args)
    if not settings.bootstrap_servers:
        raise ConfigError("Kafka bootstrap servers missing: set --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS")
    if args.max_records is not None and args.max_records < 1:
        raise ConfigError("--max must be at least 1")
    fmt = args.format
    if fmt == "auto":
        fmt = "table" if sys.stdout.isatty() else "json"
    decoder = Decoder(settings)
    out = TablePrinter(sys.stdout) if fmt == "table" else JsonPrinter(sys.stdout)
    try:
        return tail(settings, args.topic, decoder, out, from_beginning=args.from_beginning,
                    max_records=args.max_records, key=args.key, exit_at_end=args.exit_at_end)
    except TailError as exc:
        print(f"ingest tail: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `ingest tail ... | head`: the reader left, which is not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        decoder.close()


def tail(settings: Settings, topic_arg: str, decoder: Decoder, out: JsonPrinter | TablePrinter, *,
         from_beginning: bool, max_records: int | None, key: str | None, exit_at_end: bool) -> int:
    conf = {**client_config(settings), "group.id": "ingest-tail", "enable.auto.commit": False,
            "enable.auto.offset.store": False, "enable.partition.eof": True, "logger": _QUIET}
    consumer = Consumer(conf)
    try:
        topic, partitions = _resolve(consumer, settings, topic_arg)
        starts, ends = _offsets(consumer, topic, partitions, from_beginning)
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in partitions])
        where = "the beginning" if from_beginning else "the end"
        print(f"tail: reading {topic} ({len(partitions)} partitions) from {where}", file=sys.stderr, flush=True)
        done = {p for p in partitions if starts[p] >= ends[p]} if exit_at_end else set()
        wanted = key.upper() if key else None
        printed = 0
        while not (exit_at_end and len(done) == len(partitions)):
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        partition = msg.partition()
                        if partition is not None:
                            done.add(partition)
                        continue
                    raise KafkaException(err)
                raw_key = msg.key()
                record_key = raw_key.decode("utf-8", "backslashreplace") if raw_key is not None else None
                if wanted is not None and (record_key or "").upper() != wanted:
                    continue
                out.write(record(msg, record_key, decoder))
                printed += 1
                if max_records is not None and printed >= max_records:
                    return 0
        return 0
    finally:
        consumer.close()


def _resolve(consumer: Consumer, settings: Settings, topic_arg: str) -> tuple[str, list[int]]:
    """The topic's name and partitions; a bare kind means the topic under --topic-prefix."""
    try:
        metadata = consumer.list_topics(timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise TailError(f"Kafka at {settings.bootstrap_servers} unreachable: {exc.args[0].str()}") from None
    topic = topic_arg
    if topic not in metadata.topics and topic_arg in KINDS:
        topic = settings.topic(topic_arg)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        ours = sorted(t for t in metadata.topics if t.startswith(settings.topic_prefix + "."))
        hint = f"; topics under {settings.topic_prefix}: {', '.join(ours)}" if ours else ""
        raise ConfigError(f"topic {topic} does not exist{hint}")
    return topic, sorted(found.partitions)


def _offsets(consumer: Consumer, topic: str, partitions: list[int],
             from_beginning: bool) -> tuple[dict[int, int], dict[int, int]]:
    """(start, end) offset per partition, read now: the start is explicit so nothing produced later is missed."""
    starts, ends = {}, {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=METADATA_TIMEOUT_S)
        starts[p], ends[p] = (low if from_beginning else high), high
    return starts, ends


class TailError(RuntimeError):
    """Kafka unreachable: one line and exit 1, as ``ingest check`` reports it."""


# ----- decoding --------------------------------------------------------------------------------------------

class Decoder:
    """Confluent-framed Avro -> dict, with each writer schema fetched from the registry once."""

    def __init__(self, settings: Settings) -> None:
        self._client = (avro.make_client(settings.schema_registry_url, settings.schema_registry_user_info)
                        if settings.schema_registry_url else None)
        self._schemas: dict[int, Any] = {}

    def decode(self, data: bytes) -> tuple[int, Any]:
        """(schema id, value); ValueError when the bytes are not framed Avro or cannot be decoded."""
        schema_id, body = avro.split_framing(data)
        return schema_id, fastavro.schemaless_reader(io.BytesIO(body), self._schema(schema_id), None)

    def _schema(self, schema_id: int) -> Any:
        schema = self._schemas.get(schema_id)
        if schema is None:
            if self._client is None:
                raise ValueError("no --schema-registry-url to resolve the schema id")
            text = self._client.get_schema(schema_id).schema_str
            if text is None:
                raise ValueError(f"the registry has no schema text for id {schema_id}")
            schema = self._schemas[schema_id] = fastavro.parse_schema(json.loads(text))
        return schema

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _text(value: str | bytes | None) -> str:
    """A header value as printed (the worker's headers are bytes; the client's type allows str too)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value or ""


def record(msg: Message, key: str | None, decoder: Decoder) -> dict[str, Any]:
    """One record as printed: where it is, its key and headers, and the decoded value or the raw payload."""
    out: dict[str, Any] = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                           "timestamp": msg.timestamp()[1], "key": key}
    headers = msg.headers()
    if headers:
        items = headers.items() if isinstance(headers, dict) else headers
        out["headers"] = {name: _text(value) for name, value in items}
    value = msg.value()
    if value is None:
        out["value"] = None
        return out
    if value[:1] == b"\x00":  # Confluent framing; dead-letter payloads are raw frames (JSON text)
        try:
            out["schema_id"], out["value"] = decoder.decode(value)
            return out
        except Exception as exc:  # a record we cannot decode is shown raw, never skipped
            out["error"] = f"not decodable: {type(exc).__name__}: {str(exc)[:200]}"
    out["payload"] = value.decode("utf-8", "backslashreplace")
    return out


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


class JsonPrinter:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, rec: dict[str, Any]) -> None:
        self.stream.write(orjson.dumps(rec, default=_default, option=orjson.OPT_UTC_Z).decode() + "\n")
        self.stream.flush()


class TablePrinter:
    """Aligned columns: time, partition:offset, key, then the interesting value fields the records have."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.columns: list[str] = []
        self.widths: dict[str, int] = {}
        self.rows = 0

    def write(self, rec: dict[str, Any]) -> None:
        cells = dict(self._cells(rec))
        columns = list(cells)
        if columns != self.columns or self.rows % TABLE_HEADER_EVERY == 0:
            self.columns = columns
            for name in columns:
                self.widths[name] = max(self.widths.get(name, 0), MIN_WIDTHS.get(name, 0), len(name),
                                        len(cells[name]))
            self._line({name: name for name in columns})
        for name in columns:  # a wider cell widens its column from here on (the header follows at its next print)
            self.widths[name] = max(self.widths[name], len(cells[name]))
        self._line(cells)
        self.rows += 1

    def _cells(self, rec: dict[str, Any]) -> Iterator[tuple[str, str]]:
        value = rec.get("value")
        when = value.get("event_time") if isinstance(value, dict) else None
        if not isinstance(when, datetime):
            when = datetime.fromtimestamp(rec["timestamp"] / 1000, tz=UTC)
        yield "time", when.strftime("%H:%M:%S.%f")[:-3]
        yield "partition:offset", f"{rec['partition']}:{rec['offset']}"
        yield "key", rec.get("key") or ""
        if isinstance(value, dict):
            for name in TABLE_FIELDS:
                if name in value:
                    yield name, str(value[name])
            return
        headers = rec.get("headers", {})
        for name in ("reason", "stream"):
            if name in headers:
                yield name, headers[name]
        yield "payload", rec.get("payload", "")[:80]

    def _line(self, cells: dict[str, str]) -> None:
        text = "  ".join(cells[name].ljust(self.widths[name]) for name in self.columns).rstrip()
        width = shutil.get_terminal_size((200, 24)).columns
        self.stream.write(text[:width] + "\n")
        self.stream.flush()
