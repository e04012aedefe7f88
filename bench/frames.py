"""Realistic ticker frames for the benchmarks, made by the simulator's own market model.

Why the simulator's model: its prices, precisions and volumes come from the recorded exchangeInfo and
ticker/24hr captures, so frame sizes and decimal string lengths match what Binance sends; generating them
in-process (no socket) lets the hot-path benchmark measure the pipeline alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.sim.market import Market, SymbolState, load_seed_prices
from ingest.sim.settings import CAPTURED_EXCHANGE_INFO, DEFAULT_SEED_PRICES
from ingest.sim.universe import Universe

STREAMS = {"miniticker": "!miniTicker@arr", "ticker": "!ticker@arr"}
RENDER = {"miniticker": SymbolState.mini_json, "ticker": SymbolState.ticker_json}


@dataclass(frozen=True)
class Frame:
    kind: str
    stream: str
    payload: bytes  # the combined-stream envelope, exactly as the worker receives it
    records: int


def make_frames(kind: str, count: int, tickers_per_frame: int = 2000, seed: int = 7) -> list[Frame]:
    """``count`` combined-stream array frames of ``tickers_per_frame`` tickers each, event times increasing."""
    universe = Universe.load(CAPTURED_EXCHANGE_INFO, symbols=tickers_per_frame)
    seeds = load_seed_prices(DEFAULT_SEED_PRICES) if DEFAULT_SEED_PRICES.exists() else None
    market = Market(universe, seed=seed, seed_values=seeds)
    render = RENDER[kind]
    stream = STREAMS[kind]
    frames = []
    for _ in range(count):
        changed = market.tick(tickers_per_frame)
        data = "[" + ",".join(render(s) for s in changed) + "]"
        payload = f'{{"stream":"{stream}","data":{data}}}'.encode()
        frames.append(Frame(kind, stream, payload, len(changed)))
    return frames
