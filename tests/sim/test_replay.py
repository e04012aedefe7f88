"""--replay: recorded frames come out byte for byte, with E-based or fast timing, and stats say when done."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import websockets

from tests.sim.wsclient import recv_text, run
from tests.sim_fixture import EXCHANGE_INFO_EXCERPT, TEST_DATA

RECORDED = TEST_DATA / "binance-ws-2021-10-12-excerpt.jsonl"


def mini(symbol: str, e: int, price: str) -> dict:
    return {"e": "24hrMiniTicker", "E": e, "s": symbol, "c": price, "o": "1.00", "h": "2.00", "l": "0.50",
            "v": "10.00", "q": "12.50"}


def write_raw_array_file(path: Path, frames: int, gap_ms: int) -> list[str]:
    """Raw array frames written with odd spacing, so any re-encoding would show."""
    lines = []
    for i in range(frames):
        e = 1_633_998_512_000 + i * gap_ms
        body = json.dumps([mini("BTCUSDT", e, f"{100 + i}.10000000"), mini("1INCHUSDT", e, "2.50000000")],
                          separators=(", ", ": "))
        lines.append(body)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def test_raw_lines_replay_byte_for_byte_to_raw_and_combined_clients(sim_factory, tmp_path: Path) -> None:
    lines = write_raw_array_file(tmp_path / "frames.jsonl", 5, 50)
    sim = sim_factory(replay=tmp_path / "frames.jsonl", replay_timing="fast", replay_start_clients=2,
                      exchange_info=EXCHANGE_INFO_EXCERPT)

    async def scenario() -> tuple[list, list]:
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as raw, \
                websockets.connect(sim.ws_url + "/stream?streams=!miniTicker@arr") as combined:
            return [await recv_text(raw) for _ in lines], [await recv_text(combined) for _ in lines]

    raw, combined = run(scenario())
    assert raw == lines
    assert combined == ['{"stream":"!miniTicker@arr","data":' + line + "}" for line in lines]
    stats = sim.wait_for(lambda s: s["replay_finished"])
    assert stats["replay_frames_done"] == stats["replay_frames_total"] == 5
    assert stats["tickers_sent"]["total"] == 20
    records = [r for r in sim.sent_records() if "fault" not in r]
    assert len(records) == 20 and records[0]["data"] == json.loads(lines[0])[0]
    # REST follows the replayed tickers
    assert sim.request("/api/v3/ticker/price", {"symbol": "BTCUSDT"})[2]["price"] == "104.10000000"


def test_recorded_combined_frames_replay_byte_for_byte(sim_factory) -> None:
    lines = RECORDED.read_text(encoding="utf-8").splitlines()
    streams = sorted({json.loads(line)["stream"] for line in lines})
    sim = sim_factory(replay=RECORDED, replay_timing="fast")

    async def scenario() -> list:
        async with websockets.connect(sim.ws_url + "/stream?streams=" + "/".join(streams)) as ws:
            return [await recv_text(ws) for _ in lines]

    assert run(scenario()) == lines
    assert sim.wait_for(lambda s: s["replay_finished"])["frames_sent"] == len(lines)


def test_stream_frame_form_and_event_timing(sim_factory, tmp_path: Path) -> None:
    payloads = [json.dumps(mini("ETHBTC", 1_633_998_512_000 + i * 400, f"0.0{i}")) for i in range(3)]
    path = tmp_path / "wrapped.jsonl"
    path.write_text("".join(json.dumps({"stream": "ethbtc@miniTicker", "frame": p}) + "\n" for p in payloads))
    sim = sim_factory(replay=path)  # timing from E: frames 400 ms apart

    async def scenario() -> tuple[list, list]:
        loop = asyncio.get_running_loop()
        async with websockets.connect(sim.ws_url + "/ws/ethbtc@miniTicker") as ws:
            got, stamps = [], []
            for _ in payloads:
                got.append(await recv_text(ws))
                stamps.append(loop.time())
            return got, stamps

    got, stamps = run(scenario())
    assert got == payloads
    assert all(b - a >= 0.3 for a, b in itertools.pairwise(stamps)), stamps
    assert sim.wait_for(lambda s: s["replay_finished"])["mode"] == "replay"


def test_replay_waits_for_a_subscriber_and_reports_unfinished(sim_factory, tmp_path: Path) -> None:
    write_raw_array_file(tmp_path / "frames.jsonl", 3, 10)
    sim = sim_factory(replay=tmp_path / "frames.jsonl", replay_timing="fast")
    stats = sim.stats()
    assert stats["replay_finished"] is False and stats["replay_frames_done"] == 0


def full(symbol: str, e: int, price: str) -> dict:
    return {"e": "24hrTicker", "E": e, "s": symbol, "p": "0.10", "P": "1.000", "w": "1.00", "x": "1.00", "c": price,
            "Q": "1.00", "b": "0.99", "B": "1.00", "a": "1.01", "A": "1.00", "o": "1.00", "h": "2.00", "l": "0.50",
            "v": "10.00", "q": "12.50", "O": e - 86_400_000, "C": e, "F": 1, "L": 10 + e % 1000, "n": 10 + e % 1000}


def test_replay_rest_answers_what_was_replayed_so_far_on_the_replays_clock(sim_factory, tmp_path: Path) -> None:
    """A client reads REST after each replayed frame: it sees that frame's values and times, nothing later,
    nothing stamped with the wall clock, and no row for a symbol with nothing replayed yet."""
    start, gap = 1_633_998_512_000, 700  # 2021: a wall-clock stamp would stand out
    lines = []
    for i in range(5):
        tickers = [mini("BTCUSDT", start + i * gap, f"{100 + i}.00")]
        if i >= 2:
            tickers.append(full("ETHBTC", start + i * gap, f"0.0{i}"))
        lines.append(json.dumps({"stream": "!miniTicker@arr", "frame": json.dumps(tickers)}))
    (tmp_path / "frames.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    sim = sim_factory(replay=tmp_path / "frames.jsonl", exchange_info=EXCHANGE_INFO_EXCERPT)
    assert sim.request("/api/v3/ticker/24hr")[2] == []  # nothing replayed yet

    async def scenario() -> list[tuple[list, list, int, dict]]:
        seen = []
        async with websockets.connect(sim.ws_url + "/ws/!miniTicker@arr") as ws:
            for _ in range(5):
                frame = json.loads(await recv_text(ws))
                every = sim.request("/api/v3/ticker/24hr")[2]
                status, _, eth = sim.request("/api/v3/ticker/24hr", {"symbol": "ETHBTC"})
                mini_rows = sim.request("/api/v3/ticker/24hr", {"type": "MINI", "symbols": '["BTCUSDT"]'})[2]
                seen.append((frame, every, status, {"eth": eth, "mini": mini_rows}))
        return seen

    for i, (frame, every, eth_status, extra) in enumerate(run(scenario())):
        e = start + i * gap
        assert [t["E"] for t in frame] == [e] * len(frame)
        rows = {r["symbol"]: r for r in every}
        assert set(rows) == ({"BTCUSDT", "ETHBTC"} if i >= 2 else {"BTCUSDT"})  # only what was replayed
        btc = rows["BTCUSDT"]
        assert btc["lastPrice"] == f"{100 + i}.00" and btc["closeTime"] == e and btc["openTime"] == e - 86_400_000
        assert extra["mini"][0]["closeTime"] == e and extra["mini"][0]["lastPrice"] == f"{100 + i}.00"
        if i >= 2:
            eth = rows["ETHBTC"]
            assert eth["closeTime"] == e and eth["lastPrice"] == f"0.0{i}" and eth["bidPrice"] == "0.99"
            assert eth_status == 200 and extra["eth"] == eth
        else:
            assert eth_status == 400  # no row is invented for a symbol with nothing replayed yet
