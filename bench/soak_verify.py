"""The end-of-soak checks over the whole run: the accounting identity from the simulator's sent-log, no
duplicate (symbol, event time) in Kafka, no key going back in time.

The same identity as tests/faults/accounting.py, built to scale to tens of millions of tickers on a small
machine: the sent-log is streamed once (a regex on each line's head, never a full JSON parse), keys become
64-bit integers (symbol index << 41 | event time in ms) in numpy arrays, and Kafka is read without decoding
Avro: the key is the symbol and the record timestamp is the event time (the worker's contract, checked on a
sample). Only records whose key the simulator never sent over a WebSocket are decoded, to prove they are
REST snapshot records.

    sent (per kind)        = received + lost in flight
    received               = accepted{websocket} + duplicates suppressed of websocket frames
    duplicates (websocket) = duplicates_suppressed_total - (snapshot_records_total - accepted{rest_snapshot})
    accepted (per topic)   = in Kafka + dropped
    lost in flight        <= tails of the connections (per connection and stream: its last frames), and every
                             sent ticker missing from Kafka is superseded by a later record of its symbol
    dead-letter topic      = deadletter_total
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from ingest.avro import parsed_schema

JSON_STR = rb'"((?:[^"\\]|\\.)*)"'
LINE = re.compile(rb'\{"stream":' + JSON_STR + rb',"kind":"(\w+)","symbol":' + JSON_STR + rb',"E":(\d+),"conn":(\d+),')
E_BITS = 41  # event times in ms fit 41 bits until 2039
TAIL_FRAMES = 2  # frames of each (connection, stream) that may be lost when it ends (as tests/faults)


@dataclass
class Sent:
    """What the sent-log says, per kind."""

    lines: Counter[str] = field(default_factory=Counter)
    keys: dict[str, np.ndarray] = field(default_factory=dict)  # sorted unique keys per kind
    newest: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))  # kind -> symbol -> E
    tail_allowance: Counter[str] = field(default_factory=Counter)
    fault_lines: Counter[str] = field(default_factory=Counter)
    symbols: dict[str, int] = field(default_factory=dict)
    repeated: Counter[str] = field(default_factory=Counter)  # tickers of frames the simulator sent twice


def stream_kind(stream: str) -> str:
    return "miniticker" if stream.lower().endswith("miniticker@arr") or stream.lower().endswith("@miniticker") \
        else "ticker"


def read_sent_log(path: Path) -> Sent:
    sent = Sent()
    keys: dict[str, list[int]] = defaultdict(list)
    # (conn, stream, kind) -> {E: tickers}: only the last TAIL_FRAMES event times are kept while streaming
    tails: dict[tuple[int, bytes, str], dict[int, int]] = {}
    ids = sent.symbols
    with path.open("rb") as f:
        for raw in f:
            if raw.startswith(b'{"fault"'):
                fault = json.loads(raw)
                sent.fault_lines[fault["fault"]] += 1
                if fault["fault"] == "duplicate":  # the repeated tickers are logged once, as tickers
                    sent.repeated[stream_kind(fault["stream"])] += fault["tickers"]
                continue
            m = LINE.match(raw)
            if m is None:
                raise AssertionError(f"unreadable sent-log line: {raw[:200]!r}")
            stream, kind_b, symbol_b, e_b, conn_b = m.groups()
            kind = kind_b.decode()
            symbol = symbol_b.decode("unicode_escape") if b"\\" in symbol_b else symbol_b.decode()
            e = int(e_b)
            sid = ids.get(symbol)
            if sid is None:
                sid = ids[symbol] = len(ids)
            keys[kind].append((sid << E_BITS) | e)
            sent.lines[kind] += 1
            newest = sent.newest[kind]
            if e > newest.get(symbol, 0):
                newest[symbol] = e
            tail = tails.setdefault((int(conn_b), stream, kind), {})
            if e in tail:
                tail[e] += 1
            else:
                tail[e] = 1
                if len(tail) > TAIL_FRAMES:
                    del tail[min(tail)]
    for kind, values in keys.items():
        sent.keys[kind] = np.unique(np.array(values, dtype=np.int64))
    for (_, _, kind), tail in tails.items():
        sent.tail_allowance[kind] += sum(tail.values())
    return sent


@dataclass
class TopicScan:
    records: int = 0
    duplicates: int = 0
    back_in_time: int = 0
    not_sent: int = 0  # keys the simulator never sent over a WebSocket (must all be REST snapshot records)
    not_sent_websocket: int = 0  # of those, records claiming to come from a WebSocket: invented
    newest: dict[str, int] = field(default_factory=dict)
    present: int = 0  # unique sent keys found in Kafka
    timestamp_checked: int = 0
    examples: list[str] = field(default_factory=list)


def _consumer(bootstrap: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "soak-verify", "enable.auto.commit": False,
                     "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 16 * 1024 * 1024})


def scan_topic(bootstrap: str, topic: str, sent: Sent, kind: str, schema_kind: str) -> TopicScan:
    """Read ``topic`` whole: per key (one partition each) event times must strictly increase in offset order."""
    scan = TopicScan()
    consumer = _consumer(bootstrap)
    meta = consumer.list_topics(topic, timeout=30).topics.get(topic)
    if meta is None or not meta.partitions:
        consumer.close()
        return scan
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in meta.partitions}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    schema = parsed_schema(schema_kind)
    sent_keys = sent.keys.get(kind, np.zeros(0, dtype=np.int64))
    found: list[np.ndarray] = []
    last: dict[bytes, int] = {}
    positions = dict.fromkeys(ends, 0)
    ids = sent.symbols
    try:
        while any(positions[p] < ends[p] for p in ends):
            batch = consumer.consume(10000, timeout=5)
            if not batch:
                continue
            keys = np.empty(len(batch), dtype=np.int64)
            kept: list[Any] = []  # the messages of ``keys``, in order
            unknown: list[Any] = []  # messages to decode: their key was never sent over a WebSocket
            for msg in batch:
                if msg.error() is not None:
                    continue
                positions[msg.partition()] = msg.offset() + 1
                key = msg.key()
                ts = msg.timestamp()[1]
                prev = last.get(key)
                if prev is not None and ts <= prev:
                    if ts == prev:
                        scan.duplicates += 1
                    else:
                        scan.back_in_time += 1
                    if len(scan.examples) < 5:
                        scan.examples.append(f"{key!r} offset {msg.offset()}: {ts} after {prev}")
                last[key] = ts
                scan.records += 1
                if scan.timestamp_checked < 200:  # the contract relied on: record timestamp == event_time
                    value = fastavro.schemaless_reader(io.BytesIO(msg.value()[5:]), schema, None)
                    et = value["event_time"]
                    et_ms = round(et.timestamp() * 1000) if hasattr(et, "timestamp") else int(et)
                    assert et_ms == ts and value["symbol"].encode() == key, (et_ms, ts, value["symbol"], key)
                    scan.timestamp_checked += 1
                sid = ids.get(key.decode())
                if sid is None:
                    unknown.append(msg)
                    continue
                keys[len(kept)] = (sid << E_BITS) | ts
                kept.append(msg)
            keys = keys[:len(kept)]
            if len(sent_keys):
                idx = np.minimum(np.searchsorted(sent_keys, keys), len(sent_keys) - 1)
                hit = sent_keys[idx] == keys
            else:
                hit = np.zeros(len(keys), dtype=bool)
            found.append(keys[hit])
            unknown.extend(kept[i] for i in np.nonzero(~hit)[0])
            for msg in unknown:
                scan.not_sent += 1
                value = fastavro.schemaless_reader(io.BytesIO(msg.value()[5:]), schema, None)
                if value["source"] == "websocket":
                    scan.not_sent_websocket += 1
    finally:
        consumer.close()
    scan.newest = {k.decode(): v for k, v in last.items()}
    scan.present = int(np.unique(np.concatenate(found)).size) if found else 0
    return scan


def count_records(bootstrap: str, topic: str) -> int:
    consumer = _consumer(bootstrap)
    try:
        meta = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if meta is None:
            return 0
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in meta.partitions)
    finally:
        consumer.close()


@dataclass
class KindFigures:
    kind: str
    sent: int
    sent_unique: int
    accepted_ws: float
    accepted_snapshot: float
    snapshot_records: float
    tail_allowance: int
    in_kafka: int
    produced_metric: float
    missing: int
    unrestored: int
    duplicates: int
    back_in_time: int
    not_sent: int
    invented: int


@dataclass
class Verdict:
    kinds: list[KindFigures]
    sent: int
    received: float
    duplicates_ws: float
    lost_in_flight: float
    tail_allowance: int
    dropped: dict[str, float]
    dead_letters_metric: float
    dead_letters_topic: int
    duplicates_suppressed: float
    fault_lines: dict[str, int]
    failures: list[str]
    repeated: int = 0
    not_owned: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        out = [f"identity: sent {self.sent} (sent-log lines + {self.repeated} tickers of frames sent twice) = "
               f"received {self.received:g} (accepted from websockets "
               f"{sum(k.accepted_ws for k in self.kinds):g} + duplicates suppressed {self.duplicates_ws:g} + discarded "
               f"at handovers {self.not_owned:g}) + lost in "
               f"flight {self.lost_in_flight:g} (allowed: connection tails {self.tail_allowance}); dropped "
               f"{self.dropped or 0}; dead letters {self.dead_letters_topic} in topic = {self.dead_letters_metric:g} "
               f"counted"]
        for k in self.kinds:
            out.append(f"[{k.kind}] sent {k.sent} (unique {k.sent_unique}), accepted websocket {k.accepted_ws:g} + "
                       f"snapshot {k.accepted_snapshot:g} (of {k.snapshot_records:g} snapshot records), in Kafka "
                       f"{k.in_kafka} (produced metric {k.produced_metric:g}), sent keys missing from Kafka "
                       f"{k.missing} (unrestored symbols {k.unrestored}), duplicates {k.duplicates}, back in time "
                       f"{k.back_in_time}, keys not in the sent-log {k.not_sent} (websocket: {k.invented})")
        return out


def verify(sent_log: Path, bootstrap: str, prefix: str, final: dict[str, dict[str, float]]) -> Verdict:
    """``final``: the sum over replicas of their last scrapes (metric name -> label text -> value).

    ``duplicates_suppressed_total`` has no topic label, so "sent = received + lost" is checked over both ticker
    kinds together; everything else per topic."""
    sent = read_sent_log(sent_log)

    def get(name: str, **labels: str) -> float:
        series = final.get("binance_ingest_" + name, {})
        return sum(v for lbl, v in series.items() if all(f'{k}="{val}"' in lbl for k, val in labels.items()))

    dropped: dict[str, float] = {}
    for lbl, v in final.get("binance_ingest_records_dropped_total", {}).items():
        if v:
            reason = lbl.split('reason="', 1)[1].split('"', 1)[0]
            dropped[reason] = dropped.get(reason, 0.0) + v
    failures: list[str] = []
    figures: list[KindFigures] = []
    snapshot_dups = 0.0
    for kind in ("miniticker", "ticker"):
        topic = f"{prefix}.{kind}"
        scan = scan_topic(bootstrap, topic, sent, kind, kind)
        accepted_ws = get("records_accepted_total", topic=topic, source="websocket")
        accepted_snap = get("records_accepted_total", topic=topic, source="rest_snapshot")
        snap_records = get("snapshot_records_total", topic=topic)
        snapshot_dups += snap_records - accepted_snap
        produced = get("records_produced_total", topic=topic)
        sent_unique = int(sent.keys[kind].size) if kind in sent.keys else 0
        newest_sent = sent.newest.get(kind, {})
        unrestored = sum(1 for sym, e in newest_sent.items() if scan.newest.get(sym, 0) < e)
        figures.append(KindFigures(kind, sent.lines[kind], sent_unique, accepted_ws, accepted_snap, snap_records,
                                   sent.tail_allowance[kind], scan.records, produced, sent_unique - scan.present,
                                   unrestored, scan.duplicates, scan.back_in_time, scan.not_sent,
                                   scan.not_sent_websocket))
        name = f"[{kind}]"
        if scan.records != produced:
            failures.append(f"{name} records_produced_total={produced:g} but {scan.records} in Kafka")
        if not dropped and accepted_ws + accepted_snap != scan.records:
            failures.append(f"{name} accepted {accepted_ws:g}+{accepted_snap:g} != in Kafka {scan.records}")
        if unrestored:
            failures.append(f"{name} {unrestored} symbols whose newest sent ticker has no equal or later record")
        if scan.duplicates:
            failures.append(f"{name} {scan.duplicates} duplicate (symbol, event time) in Kafka: {scan.examples}")
        if scan.back_in_time:
            failures.append(f"{name} {scan.back_in_time} records going back in time: {scan.examples}")
        if scan.not_sent_websocket:
            failures.append(f"{name} {scan.not_sent_websocket} websocket records the simulator never sent")
    dup_total = get("duplicates_suppressed_total")
    dup_ws = dup_total - snapshot_dups
    total_sent = sum(f.sent for f in figures) + sum(sent.repeated.values())
    not_owned = get("tickers_not_owned_total")  # discarded at a coordinated replica's frame gate (handovers)
    received = sum(f.accepted_ws for f in figures) + dup_ws + not_owned
    lost = total_sent - received
    allowance = sum(f.tail_allowance for f in figures)
    if snapshot_dups < 0:
        failures.append(f"more snapshot records accepted than built ({snapshot_dups:g})")
    if lost < 0:
        failures.append(f"the workers counted {received:g} received tickers but {total_sent} were sent")
    if lost > allowance:
        failures.append(f"{lost:g} sent tickers unaccounted for (allowed: connection tails {allowance})")
    missing = sum(f.missing for f in figures)
    if missing > lost + dup_ws + sum(dropped.values()):
        failures.append(f"{missing} sent keys missing from Kafka but only {lost:g} lost, {dup_ws:g} suppressed, "
                        f"{dropped} dropped")
    if dropped:
        in_kafka = sum(f.in_kafka for f in figures)
        accepted = sum(f.accepted_ws + f.accepted_snapshot for f in figures)
        if accepted != in_kafka + sum(dropped.values()):
            failures.append(f"accepted {accepted:g} != in Kafka {in_kafka} + dropped {dropped}")
    dead_metric = get("deadletter_total")
    dead_topic = count_records(bootstrap, f"{prefix}.deadletter")
    if dead_topic != dead_metric:
        failures.append(f"dead-letter topic has {dead_topic} records, deadletter_total={dead_metric:g}")
    return Verdict(figures, total_sent, received, dup_ws, lost, allowance, dropped, dead_metric, dead_topic,
                   dup_total, dict(sent.fault_lines), failures, sum(sent.repeated.values()), not_owned)
