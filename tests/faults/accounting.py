"""The accounting identity every fault test checks: what the simulator sent is what Kafka holds, plus what
the worker counted as dropped, suppressed as a duplicate or dead-lettered, and nothing else.

What is compared, precisely:

* **sent** — ticker lines of the simulator's ``--sent-log`` for one kind (fault lines such as
  ``malformed``/``duplicate`` are kept apart). A line means "the simulator wrote this ticker to connection
  ``conn``", with multiplicity: during a rotation overlap the same (symbol, E) is sent on two connections.
* **received** — what the worker read from its sockets: ``records_accepted_total{source=websocket}`` +
  the websocket share of ``duplicates_suppressed_total`` (the total minus the REST snapshot entries that
  were suppressed, i.e. snapshot entries - ``records_accepted_total{source=rest_snapshot}``).
* **lost in flight** = sent - received. A frame the simulator wrote into a TCP connection that was then cut
  (1006 from the server, or the worker aborting a stale socket) may never reach the worker; TCP is ordered,
  so only the *tail* of such a connection can be lost. The test states how many it allows (0 for clean
  closes) and every missing (symbol, E) must be superseded in Kafka by a later event of the same symbol
  (the REST snapshot or the next stream frame restored the state).
* **in Kafka** = ``records_produced_total{topic}`` = records read back from the topic; every accepted record
  is either in Kafka or in ``records_dropped_total{reason}`` (accepted = in Kafka + dropped).
* **no unexplained duplicates**: no (symbol, event time) appears twice in Kafka.
* **dead letters**: records in the dead-letter topic == ``deadletter_total`` (sum over reasons).

Metrics must be scraped while the worker still runs and after it stopped moving (``quiesce``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.kafka_reading import RegistryDecoder, read_all

M = "binance_ingest_"


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """Prometheus text -> {metric name: {label text: value}} (label text as exposed, '' for none)."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        out.setdefault(name, {})[labels.rstrip("}")] = float(value)
    return out


@dataclass
class Scrape:
    """One /metrics scrape of the worker, with label-filtered sums."""

    samples: dict[str, dict[str, float]]

    def get(self, name: str, **labels: str) -> float:
        series = self.samples.get(M + name, {})
        return sum(v for lbl, v in series.items() if all(f'{k}="{val}"' in lbl for k, val in labels.items()))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for lbl, v in self.samples.get(M + name, {}).items():
            for part in lbl.split(","):
                key, _, val = part.partition("=")
                if key == label and v:
                    out[val.strip('"')] = out.get(val.strip('"'), 0.0) + v
        return out


def scrape(worker: Any) -> Scrape:
    _, text = worker.get("/metrics")
    return Scrape(parse_metrics(text))


@dataclass
class SimState:
    """What the simulator knew when the input stopped (it is stopped right after)."""

    stats: dict[str, Any]
    closed: list[dict[str, Any]]
    snapshot_entries: int  # ticker/24hr entries served to the worker (each is accepted or suppressed)
    exchange_symbols: int  # exchangeInfo symbols: each one a record for the symbols topic (or a dead letter)


def quiesce(sim: Any, worker: Any, settle_s: float = 0.6, timeout_s: float = 30.0) -> tuple[Scrape, SimState]:
    """Stop the input and wait until the worker has nothing left in flight; return the final scrape.

    Silence first (no frame is in the air when the simulator then stops), stop the simulator (no reconnect
    can bring new data, not even a REST snapshot), then wait until the producer queue is empty and the
    counters stop moving."""
    sim.fault("silence", seconds=120)
    time.sleep(settle_s)
    stats = sim.stats()
    calls = stats["rest_requests"].get("/api/v3/ticker/24hr", 0)
    # what the worker's snapshot of an all-market stream asks for (ingest.binance.snapshot): TRADING symbols only
    entries = len(sim.request("/api/v3/ticker/24hr", {"symbolStatus": "TRADING"})[2]) if calls else 0
    symbols = len(sim.request("/api/v3/exchangeInfo")[2]["symbols"])
    state = SimState(stats, sim.connections()["closed"], calls * entries, symbols)
    sim.stop()
    deadline = time.monotonic() + timeout_s
    last: tuple[float, ...] = ()
    while time.monotonic() < deadline:
        worker.check_alive()
        s = scrape(worker)
        now = (s.get("records_produced_total"), s.get("records_accepted_total"), s.get("records_dropped_total"),
               s.get("duplicates_suppressed_total"), s.get("deadletter_total"))
        if s.get("producer_queue_messages") == 0 and now == last:
            return s, state
        last = now
        time.sleep(settle_s)
    raise AssertionError("the worker never settled after the input stopped")


def tail_allowance(sim: Any, state: SimState, kind: str, frames: int = 2, codes: tuple[int, ...] = (1006,)) -> int:
    """Tickers that may be lost in flight: the last ``frames`` frames of each connection that ended with one of
    ``codes`` as the simulator saw it (1006: cut without a close handshake, by its own abort or the client's;
    a client's 1000 during rotation: frames the server sent after the client's close frame are discarded)."""
    cut = {c["id"] for c in state.closed if c["close_code"] in codes}
    per_conn: dict[int, list[int]] = {}
    for line in sent_tickers(sim, kind):
        if line["conn"] in cut:
            per_conn.setdefault(line["conn"], []).append(line["E"])
    allowance = 0
    for times in per_conn.values():
        last_frames = sorted(set(times))[-frames:]
        allowance += sum(1 for e in times if e in last_frames)
    return allowance


def sent_tickers(sim: Any, kind: str) -> list[dict[str, Any]]:
    return [line for line in sim.sent_records() if "fault" not in line and line.get("kind") == kind]


@dataclass
class KafkaRecord:
    symbol: str
    event_time: int
    source: str
    connection_id: str | None


def read_tickers(bootstrap: str, registry: str, topic: str) -> list[KafkaRecord]:
    decoder = RegistryDecoder(registry)
    out = []
    for rec in read_all(bootstrap, topic):
        _, value = decoder.decode(rec.raw)
        et = value["event_time"]
        et_ms = round(et.timestamp() * 1000) if hasattr(et, "timestamp") else int(et)
        assert rec.key == value["symbol"].encode(), "key must be the symbol"
        out.append(KafkaRecord(value["symbol"], et_ms, value["source"], value.get("connection_id")))
    return out


@dataclass
class Figures:
    """The numbers a fault test prints and checks."""

    kind: str
    sent: int
    sent_unique: int
    received: float
    lost_in_flight: float
    in_kafka: int
    in_kafka_websocket: int
    in_kafka_snapshot: int
    produced_metric: float
    accepted_websocket: float
    accepted_snapshot: float
    duplicates_suppressed: float
    duplicates_websocket: float
    dropped: dict[str, float]
    dead_letters: float
    missing: list[tuple[str, int]] = field(default_factory=list)
    sent_per_conn: dict[int, int] = field(default_factory=dict)

    def line(self) -> str:
        return (f"[{self.kind}] sent={self.sent} (unique {self.sent_unique}) received={self.received:g} "
                f"lost_in_flight={self.lost_in_flight:g} in_kafka={self.in_kafka} (websocket "
                f"{self.in_kafka_websocket}, rest_snapshot {self.in_kafka_snapshot}) "
                f"dropped={ {k: int(v) for k, v in self.dropped.items()} } duplicates_suppressed="
                f"{self.duplicates_suppressed:g} (websocket {self.duplicates_websocket:g}) "
                f"dead_letters={self.dead_letters:g} missing={len(self.missing)} sent_per_conn={self.sent_per_conn}")


def check(sim: Any, final: Scrape, bootstrap: str, registry: str, prefix: str, kind: str = "miniticker", *,
          state: SimState | None = None, snapshot_entries: int | None = None, allowed_lost: int = 0,
          dead_letter_frames: int | None = 0, joint: bool = False) -> Figures:
    """Assert the identity for one ticker kind; returns the figures for the test's report.

    ``records_dropped_total`` has no topic label, so "handed to the producer = in Kafka + dropped" is checked
    over all topics: ticker records accepted + one symbols record per exchangeInfo symbol (those that failed
    validation are dead letters instead) + dead letters.
    ``state``: what the simulator served (REST snapshot entries, each accepted or suppressed; symbols); without
    it, ``snapshot_entries`` gives the snapshot entries and every drop is assumed to be of this topic.
    ``allowed_lost``: how many sent tickers may be lost in flight (tails of cut connections).
    ``dead_letter_frames``: expected ``deadletter_total`` (None: do not check the number, only the topic).
    ``joint``: another kind is streamed too; ``duplicates_suppressed_total`` has no kind label, so what was lost
    in flight can only be told over all kinds: ``check_kinds`` does that (the figures' lost/received are then
    this kind's share under the assumption that every websocket duplicate was of this kind).
    """
    topic = f"{prefix}.{kind}"
    sent = sent_tickers(sim, kind)
    sent_keys = Counter((line["symbol"], line["E"]) for line in sent)
    records = read_tickers(bootstrap, registry, topic)
    in_kafka = Counter((r.symbol, r.event_time) for r in records)

    dupes = {k: n for k, n in in_kafka.items() if n > 1}
    assert not dupes, f"duplicates in Kafka: {list(dupes.items())[:5]}"
    ws_keys = {(r.symbol, r.event_time) for r in records if r.source == "websocket"}
    invented = ws_keys - set(sent_keys)
    assert not invented, f"websocket records the simulator never sent: {sorted(invented)[:5]}"

    produced = final.get("records_produced_total", topic=topic)
    assert produced == len(records), f"records_produced_total{{topic={topic}}}={produced} but {len(records)} in Kafka"

    accepted_ws = final.get("records_accepted_total", topic=topic, source="websocket")
    accepted_snap = final.get("records_accepted_total", topic=topic, source="rest_snapshot")
    dropped = final.by_label("records_dropped_total", "reason")
    dropped_total = sum(dropped.values())
    dead = final.get("deadletter_total")
    dl_records = read_all(bootstrap, f"{prefix}.deadletter")
    symbol_dead = sum(1 for r in dl_records if r.key == b"rest:exchangeInfo")
    if state is not None:
        snapshot_entries = state.snapshot_entries
        handed = final.get("records_accepted_total") + state.exchange_symbols - symbol_dead + dead
        produced_all = final.get("records_produced_total")
        assert handed == produced_all + dropped_total, (
            f"handed to the producer {handed:g} != produced {produced_all:g} + dropped {dropped}")
    if state is None:  # every drop counted against this topic
        assert accepted_ws + accepted_snap == len(records) + dropped_total, (
            f"accepted {accepted_ws}+{accepted_snap} != in Kafka {len(records)} + dropped {dropped}")
    elif not dropped_total:
        assert accepted_ws + accepted_snap == len(records), (
            f"accepted {accepted_ws}+{accepted_snap} != in Kafka {len(records)} with nothing dropped")
    else:  # drops may belong to other topics (symbols, dead letters): the all-topic identity above holds
        assert len(records) <= accepted_ws + accepted_snap

    dup_total = final.get("duplicates_suppressed_total")
    dup_snapshot = (snapshot_entries or 0) - accepted_snap
    assert dup_snapshot >= 0, f"more snapshot records accepted ({accepted_snap}) than entries ({snapshot_entries})"
    dup_ws = dup_total - dup_snapshot
    received = accepted_ws + dup_ws
    lost = len(sent) - received
    if not joint:
        assert lost >= 0, f"the worker counted {received} received tickers but only {len(sent)} were sent"
        assert lost <= allowed_lost, f"{lost} sent tickers are not accounted for (allowed in flight: {allowed_lost})"

    newest: dict[str, int] = {}
    for sym, et in in_kafka:
        newest[sym] = max(newest.get(sym, 0), et)
    missing = sorted(k for k in sent_keys if k not in in_kafka)
    unrestored = [k for k in missing if newest.get(k[0], 0) <= k[1]]
    assert not unrestored, f"sent tickers missing from Kafka with no later state of the symbol: {unrestored[:5]}"
    if not joint:
        assert len(missing) <= lost + dup_ws + dropped_total, (
            f"{len(missing)} missing but only {lost} lost, {dup_ws} suppressed and {dropped_total} dropped")

    assert len(dl_records) == dead, f"dead-letter topic has {len(dl_records)} records, deadletter_total={dead}"
    if dead_letter_frames is not None:
        assert dead == dead_letter_frames, f"deadletter_total={dead}, expected {dead_letter_frames}"

    return Figures(kind, len(sent), len(sent_keys), received, lost, len(records),
                   sum(1 for r in records if r.source == "websocket"),
                   sum(1 for r in records if r.source == "rest_snapshot"), produced, accepted_ws, accepted_snap,
                   dup_total, dup_ws, dropped, dead, missing, dict(Counter(line["conn"] for line in sent)))


def check_kinds(sim: Any, final: Scrape, bootstrap: str, registry: str, prefix: str, kinds: tuple[str, ...], *,
                state: SimState, allowed_lost: int = 0, dead_letter_frames: int | None = 0) -> list[Figures]:
    """``check`` for several kinds streamed at once (e.g. ``!miniTicker@arr`` and per-symbol ``@ticker``): each
    kind's records checked on its own, the received/lost balance over all kinds together. Every snapshot
    entry counts once per kind (the worker's snapshots covered every TRADING symbol in each kind here)."""
    figures = [check(sim, final, bootstrap, registry, prefix, kind, state=state, allowed_lost=allowed_lost,
                     dead_letter_frames=dead_letter_frames, joint=True) for kind in kinds]
    dup_snapshot = sum(state.snapshot_entries - f.accepted_snapshot for f in figures)
    dup_ws = final.get("duplicates_suppressed_total") - dup_snapshot
    received = sum(f.accepted_websocket for f in figures) + dup_ws
    sent = sum(f.sent for f in figures)
    lost = sent - received
    assert dup_ws >= 0, f"{dup_snapshot} snapshot entries suppressed but only {dup_ws + dup_snapshot} in total"
    assert lost >= 0, f"the worker counted {received} received tickers but only {sent} were sent"
    assert lost <= allowed_lost, f"{lost} sent tickers are not accounted for (allowed in flight: {allowed_lost})"
    missing = sum(len(f.missing) for f in figures)
    dropped = sum(figures[0].dropped.values())
    assert missing <= lost + dup_ws + dropped, (
        f"{missing} missing but only {lost} lost, {dup_ws} suppressed and {dropped} dropped")
    return figures
