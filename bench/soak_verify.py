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
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

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
    symbols: dict[bytes, int] = field(default_factory=dict)  # UTF-8 symbol (as Kafka keys are) -> index
    repeated: Counter[str] = field(default_factory=Counter)  # tickers of frames the simulator sent twice


def stream_kind(stream: str) -> str:
    return "miniticker" if stream.lower().endswith("miniticker@arr") or stream.lower().endswith("@miniticker") \
        else "ticker"


def _fields(raw: bytes) -> tuple[bytes, bytes, bytes, int, bytes]:
    """(stream, kind, symbol, E, conn) of a ticker line: a split of its head on quotes (4x a regex's speed);
    the regex only when the head does not have the expected shape (e.g. an escaped quote in a name)."""
    parts = raw[:300].split(b'"', 17)
    if len(parts) == 18 and parts[1] == b"stream" and parts[13] == b"E" and parts[15] == b"conn":
        return parts[3], parts[7], parts[11], int(parts[14][1:-1]), parts[16][1:-1]
    m = LINE.match(raw)
    if m is None:
        raise AssertionError(f"unreadable sent-log line: {raw[:200]!r}")
    stream, kind, symbol, e, conn = m.groups()
    if b"\\" in symbol:
        symbol = json.loads(b'"' + symbol + b'"').encode()
    return stream, kind, symbol, int(e), conn


def read_sent_log(path: Path) -> Sent:
    """One pass; the simulator writes each frame's tickers as consecutive lines, so a connection's tail (its
    last TAIL_FRAMES frames per stream) is kept per frame, not per line."""
    sent = Sent()
    keys: dict[bytes, array[int]] = {}
    tails: dict[tuple[bytes, bytes, bytes], list[int]] = {}  # (conn, stream, kind) -> tickers of its last frames
    ids = sent.symbols
    frame: tuple[bytes, bytes, int] | None = None
    frame_tail: list[int] = []
    with path.open("rb") as f:
        for raw in f:
            if raw.startswith(b'{"fault"'):
                fault = json.loads(raw)
                sent.fault_lines[fault["fault"]] += 1
                if fault["fault"] == "duplicate":  # the repeated tickers are logged once, as tickers
                    sent.repeated[stream_kind(fault["stream"])] += fault["tickers"]
                continue
            stream, kind, symbol, e, conn = _fields(raw)
            sid = ids.get(symbol)
            if sid is None:
                sid = ids[symbol] = len(ids)
            column = keys.get(kind)
            if column is None:
                column = keys[kind] = array("q")
            column.append((sid << E_BITS) | e)
            here = (conn, stream, e)
            if here != frame:
                frame = here
                frame_tail = tails.setdefault((conn, stream, kind), [])
                frame_tail.append(0)
                if len(frame_tail) > TAIL_FRAMES:
                    del frame_tail[0]
            frame_tail[-1] += 1
    names = {v: k.decode() for k, v in ids.items()}
    for kind_b, column in keys.items():
        kind = kind_b.decode()
        values = np.frombuffer(column, dtype=np.int64)
        sent.lines[kind] = len(values)
        unique = np.unique(values)
        sent.keys[kind] = unique
        sids = unique >> E_BITS
        last = np.flatnonzero(np.append(np.diff(sids) != 0, True))  # sorted: the last key of each symbol
        sent.newest[kind] = {names[int(sid)]: int(key & ((1 << E_BITS) - 1))
                             for sid, key in zip(sids[last], unique[last], strict=True)}
    for (_, _, kind_b), frames in tails.items():
        sent.tail_allowance[kind_b.decode()] += sum(frames)
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
    """Read ``topic`` whole: per key (one partition each) event times must strictly increase in offset order.
    Per record only its key, timestamp and position are taken; the checks run on numpy arrays at the end."""
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
    ids = dict(sent.symbols)  # symbols only Kafka has (snapshot records) get further indexes
    all_sids, all_ts = array("q"), array("q")
    found: list[np.ndarray] = []
    positions = dict.fromkeys(ends, 0)
    try:
        while any(positions[p] < ends[p] for p in ends):
            batch = consumer.consume(10000, timeout=5)
            sids, stamps = array("q"), array("q")
            kept = []
            for msg in batch:
                if msg.error() is not None:
                    continue
                positions[msg.partition()] = msg.offset() + 1
                key = msg.key()
                sid = ids.get(key)
                if sid is None:
                    sid = ids[key] = len(ids)
                sids.append(sid)
                stamps.append(msg.timestamp()[1])
                kept.append(msg)
            if not kept:
                continue
            sid_arr, ts_arr = np.frombuffer(sids, dtype=np.int64), np.frombuffer(stamps, dtype=np.int64)
            keys = (sid_arr << E_BITS) | ts_arr
            if len(sent_keys):
                hit = sent_keys[np.minimum(np.searchsorted(sent_keys, keys), len(sent_keys) - 1)] == keys
            else:
                hit = np.zeros(len(keys), dtype=bool)
            found.append(keys[hit])
            check = set(range(max(0, min(len(kept), 200 - scan.timestamp_checked))))  # timestamp == event_time
            for i in sorted(check | {int(j) for j in np.nonzero(~hit)[0]}):
                value = fastavro.schemaless_reader(io.BytesIO(kept[i].value()[5:]), schema, None)
                if i in check:
                    et = value["event_time"]
                    et_ms = round(et.timestamp() * 1000) if hasattr(et, "timestamp") else int(et)
                    assert et_ms == stamps[i] and value["symbol"].encode() == kept[i].key(), (et_ms, stamps[i])
                    scan.timestamp_checked += 1
                if not hit[i]:
                    scan.not_sent += 1
                    scan.not_sent_websocket += value["source"] == "websocket"
            all_sids.extend(sids)
            all_ts.extend(stamps)
    finally:
        consumer.close()
    sid_arr, ts_arr = np.frombuffer(all_sids, dtype=np.int64), np.frombuffer(all_ts, dtype=np.int64)
    scan.records = len(sid_arr)
    if scan.records:
        order = np.argsort(sid_arr, kind="stable")  # per key, in consumption (= offset) order
        s_sorted, t_sorted = sid_arr[order], ts_arr[order]
        same = s_sorted[1:] == s_sorted[:-1]
        step = t_sorted[1:] - t_sorted[:-1]
        scan.duplicates = int(np.count_nonzero(same & (step == 0)))
        scan.back_in_time = int(np.count_nonzero(same & (step < 0)))
        names = {v: k.decode() for k, v in ids.items()}
        for i in np.flatnonzero(same & (step <= 0))[:5]:
            scan.examples.append(f"{names[int(s_sorted[i])]}: {int(t_sorted[i + 1])} after {int(t_sorted[i])}")
        last = np.flatnonzero(np.append(~same, True))
        scan.newest = {names[int(sid)]: int(t) for sid, t in zip(s_sorted[last], t_sorted[last], strict=True)}
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
    gate_malformed: int = 0

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
    unrestored_examples: list[str] = []
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
        stale = sorted(sym for sym, e in newest_sent.items() if scan.newest.get(sym, 0) < e)
        unrestored = len(stale)
        unrestored_examples.extend(f"{sym} (sent {newest_sent[sym]}, newest in Kafka {scan.newest.get(sym)})"
                                   for sym in stale[:10])
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
            failures.append(f"{name} {unrestored} symbols whose newest sent ticker has no equal or later record: "
                            f"{unrestored_examples}")
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
    # A malformed frame is a fault line, not tickers, in the sent-log; it becomes a dead letter, or, on a shard
    # revoked from the replica, is discarded at the frame gate, where its one '"e":' marker was counted in
    # tickers_not_owned_total. Those are the malformed frames without a dead letter (oversized ones carry
    # thousands of markers: none may be among them, or the identity below breaks, as it should).
    gate_malformed = max(0, sent.fault_lines.get("malformed", 0) - int(get("deadletter_total")))
    received -= gate_malformed
    lost = total_sent - received
    allowance = sum(f.tail_allowance for f in figures)
    if snapshot_dups < 0:
        failures.append(f"more snapshot records accepted than built ({snapshot_dups:g})")
    if lost < 0:
        failures.append(f"the workers counted {received:g} received tickers but {total_sent} were sent")
    if lost > allowance:
        failures.append(f"{lost:g} sent tickers unaccounted for (allowed: connection tails {allowance})")
    missing = sum(f.missing for f in figures)
    if missing > lost + dup_ws + not_owned + sum(dropped.values()):
        failures.append(f"{missing} sent keys missing from Kafka but only {lost:g} lost, {dup_ws:g} suppressed, "
                        f"{not_owned:g} discarded at handovers, {dropped} dropped")
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
                   dup_total, dict(sent.fault_lines), failures, sum(sent.repeated.values()), not_owned,
                   gate_malformed)
