"""A symbol delisted while the worker's connection is down still gets its final state into Kafka (issue 17).

The soak found symbols whose newest Kafka record was older than the last tick Binance sent: their last ticks
went by while no connection of ours listened, and the restore snapshot (``symbolStatus=TRADING``) no longer
listed them. Simulator -> `ingest run` -> real Kafka + registry.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
import websockets

from tests.kafka_reading import RegistryDecoder, read_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _event_ms(value: dict) -> int:
    et = value["event_time"]
    return round(et.timestamp() * 1000) if hasattr(et, "timestamp") else int(et)


class Probe:
    """A second client of the simulator, connected after the worker's connection was silenced: it hears the
    ticks the worker misses (and the simulator's sent-log records them under its connection)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ticks: list[tuple[str, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        async with websockets.connect(self.url + "/stream?streams=!miniTicker@arr") as ws:
            while not self.stop.is_set():
                try:
                    frame = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    continue
                self.ticks.extend((t["s"], t["E"]) for t in json.loads(frame)["data"])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def test_symbol_delisted_while_the_connection_is_silent_ends_with_its_last_sent_tick(
        sim_factory, worker_factory, stack_endpoints, unique_prefix):
    """Catches: a delisting during an outage leaving the symbol's newest record older than its last tick (the
    reconnect snapshot asks for TRADING symbols only). The worker's connection is silenced for 30 s (longer
    than the stale timeout, so it also reconnects); meanwhile the victim ticks (heard by the probe) and is
    delisted at once. The refresh (every 1 s) sees the delisting: its snapshot, or the reconnect's, which now
    asks for recently-left symbols too, must bring the victim's final state."""
    sim = sim_factory(symbols=5, interval=0.25, rate=4, seed=29)
    _, _, info = sim.request("/api/v3/exchangeInfo")
    victim = [s["symbol"] for s in info["symbols"] if s["status"] == "TRADING"][1]
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", unique_prefix, "--exchange-info-refresh-s", "1",
                            "--backoff-initial-s", "0.2")
    worker.wait_ready()
    worker.wait_for(lambda: worker.metric("binance_ingest_records_accepted_total", source="websocket") >= 5, 15,
                    "websocket records")
    sim.fault("silence", seconds=30)  # every open connection: the worker's
    probe = Probe(sim.ws_url)
    try:
        deadline = time.monotonic() + 20
        while not any(s == victim for s, _ in probe.ticks):
            assert time.monotonic() < deadline, f"{victim} never ticked while the worker's connection was silent"
            time.sleep(0.05)
        sim.delisting(victim)  # right after a tick the worker did not hear
        worker.wait_for(lambda: worker.metric("binance_ingest_symbols_delisted_total") >= 1, 15, "the delisting")
        worker.wait_for(lambda: worker.metric("binance_ingest_ws_reconnects_total") >= 1, 30,
                        "the stale connection replaced")
        worker.wait_for(lambda: worker.metric("binance_ingest_ws_connected") >= 1, 15, "delivering again")
        time.sleep(2.0)
    finally:
        probe.close()
    assert worker.stop() == 0
    sim.stop()

    sent = [r["E"] for r in sim.sent_records() if r.get("symbol") == victim and r.get("kind") == "miniticker"]
    heard = [e for s, e in probe.ticks if s == victim]
    assert sent and max(heard) == max(sent)
    decoder = RegistryDecoder(stack_endpoints.registry_url)
    records = [decoder.decode(rec.raw)[1] for rec in read_all(stack_endpoints.bootstrap_servers,
                                                               f"{unique_prefix}.miniticker")]
    mine = [v for v in records if v["symbol"] == victim]
    newest = max(mine, key=_event_ms)
    print(f"\n{victim}: last sent tick {max(sent)}, newest in Kafka {_event_ms(newest)} ({newest['source']}); "
          f"{len(mine)} records")
    assert _event_ms(newest) == max(sent)
    assert newest["source"] == "rest_snapshot"
    per_event = [_event_ms(v) for v in mine]
    assert len(per_event) == len(set(per_event)), "each event time of the victim once"
