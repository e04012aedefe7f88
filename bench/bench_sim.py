"""How many generated tickers per second `ingest sim` pushes in array frames, from one core.

The simulator runs as a real subprocess pinned to CPU 0 (``taskset``, when available); a counting client
runs in this process pinned to CPU 1, so the client's work does not share the simulator's core. The
simulator is asked for more than it can do (every TRADING symbol in every 1 ms interval), so the figure
is its ceiling. Printed: tickers/s received over wall-clock time, and the simulator's CPU use in that time
(tickers per CPU-second is the one-core figure). Not a test: numbers are printed, never asserted.

    .venv/bin/python bench/bench_sim.py            # 10 s per stream kind
    .venv/bin/python bench/bench_sim.py --quick    # about 2 s per kind, for CI
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import websockets

REPO = Path(__file__).resolve().parents[1]
EXCHANGE_INFO = REPO.parent / "shared" / "data" / "binance-captures" / "exchangeInfo-2021-10-12.json"
EXCERPT = REPO / "tests" / "data" / "exchangeInfo-2021-10-12-excerpt.json"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_sim(exchange_info: Path, symbols: int | None, interval: float) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "ingest.cli", "sim", "--port", "0", "--exchange-info", str(exchange_info),
           "--interval", str(interval), "--seed", "1", "--seed-prices", "none", "--duration", "300",
           "--exit-on-stdin-eof", "--max-queue-frames", "100000",
           "--serve-retired-streams"]  # !ticker@arr is measured as before its retirement
    if symbols:
        cmd += ["--symbols", str(symbols)]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    ws_url = proc.stdout.readline().strip()
    proc.stdout.readline()
    return proc, ws_url


async def count(ws_url: str, stream: str, seconds: float, warmup: float) -> tuple[int, int, float]:
    """(tickers, frames, elapsed) received after a warm-up; counting is a substring count, not a parse."""
    async with websockets.connect(f"{ws_url}/ws/{stream}", max_size=None, ping_interval=None) as ws:
        loop = asyncio.get_running_loop()
        end_warmup = loop.time() + warmup
        while loop.time() < end_warmup:
            await ws.recv()
        tickers = frames = 0
        start = loop.time()
        while (now := loop.time()) - start < seconds:
            frame = await ws.recv()
            tickers += frame.count('{"e":')
            frames += 1
        return tickers, frames, now - start


def measure(stream: str, seconds: float, symbols: int | None, interval: float) -> None:
    exchange_info = EXCHANGE_INFO if EXCHANGE_INFO.exists() else EXCERPT
    proc, ws_url = start_sim(exchange_info, symbols, interval)
    try:
        warmup = min(1.0, seconds / 2)
        # the counting starts after the warm-up, so the CPU sample is taken at the same moment
        result: dict[str, float] = {}

        async def run() -> None:
            task = asyncio.create_task(count(ws_url, stream, seconds, warmup))
            await asyncio.sleep(warmup)
            result["cpu_start"] = cpu_seconds(proc.pid)
            tickers, frames, elapsed = await task
            result.update(cpu_end=cpu_seconds(proc.pid), tickers=tickers, frames=frames, elapsed=elapsed)

        asyncio.run(run())
        cpu = result["cpu_end"] - result["cpu_start"]
        rate = result["tickers"] / result["elapsed"]
        per_cpu = result["tickers"] / cpu if cpu > 0 else float("nan")
        per_frame = result["tickers"] / max(1, result["frames"])
        print(f"{stream:18s} {rate:12,.0f} tickers/s  {per_cpu:12,.0f} tickers/CPU-s"
              f"  sim CPU {cpu / result['elapsed']:5.0%}  frames/s {result['frames'] / result['elapsed']:8,.0f}"
              f"  tickers/frame {per_frame:7,.0f}"
              f"  ({exchange_info.name}, interval {interval * 1000:g} ms)")
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.terminate()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 2 s per stream kind (CI)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--symbols", type=int, help="TRADING symbols (default: the capture's 1,262)")
    parser.add_argument("--interval", type=float, default=0.001)
    args = parser.parse_args()
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the counting client stays off the simulator's core
    seconds = 1.5 if args.quick else args.seconds
    print(f"bench_sim: generated array frames, {seconds:g} s per stream kind")
    for stream in ("!miniTicker@arr", "!ticker@arr"):
        measure(stream, seconds, args.symbols, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
