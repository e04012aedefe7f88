"""Weeks in an hour: the worker under Binance's life compressed, with the accounting identity over the run.

    .venv/bin/python -m bench.soak --minutes 60 --replicas 2 --seed 17 --write-report
    .venv/bin/python -m bench.soak --minutes 5            # what CI runs (tests/soak)
    .venv/bin/python -m bench.soak --render DIR           # rewrite docs/reliability.* from a finished run

A private local stack (Kafka + registry with a file database, so schema ids survive its restarts), the
simulator at 10x the whole market's rate (every TRADING symbol of the capture in every 0.1 s array), and one
or more workers (``--replicas 2``: coordinated through Kafka). Faults follow a seeded plan
(bench/soak_faults.py), each lane (simulator, broker, registry) in its own thread so they overlap at random;
connections also rotate on their own after ``--max-lifetime`` (60 s, as Binance's 24 h compressed).
Every ``--sample-s`` the workers' /proc and /metrics are sampled (bench/soak_stats.py). At the end the input
stops, the workers drain, and bench/soak_verify.py checks the identity over the whole run. Exit code 1 when
the identity breaks, a duplicate or a key going back in time is in Kafka, or a watched series grows.
Everything is written under ``--out`` (samples.jsonl, faults.jsonl, result.json, logs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import soak_faults, soak_stats, soak_verify
from bench.procs import Child
from ingest.devstack.stack import LocalStack, free_port
from ingest.sim.faults import FAULT_TYPES
from ingest.sim.settings import CAPTURED_EXCHANGE_INFO

REPO = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "binance-ingest"
TICKER_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "SOLUSDT", "DOTUSDT", "DOGEUSDT",
                  "LTCUSDT", "LINKUSDT", "ETHBTC", "BNBBTC", "TRXUSDT", "MATICUSDT", "AVAXUSDT", "ATOMUSDT")
NON_ASCII_BASE = "币安人生"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="soak run of the worker (docs/reliability.md)")
    p.add_argument("--minutes", type=float, default=5.0, help="length of the faulty period")
    p.add_argument("--replicas", type=int, default=1, help="workers; above 1 they coordinate through Kafka")
    p.add_argument("--seed", type=int, default=17, help="seed of the fault plan and the simulator")
    p.add_argument("--symbols", type=int, help="TRADING symbols generated (default: all of the capture)")
    p.add_argument("--interval", type=float, default=0.1, help="array interval: 0.1 s = 10x Binance's 1 s")
    p.add_argument("--max-lifetime", type=float, default=60.0, help="connection lifetime (Binance: 24 h)")
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--non-ascii", choices=("auto", "on", "off"), default="auto",
                   help="non-ASCII listings (auto: when the simulator accepts them)")
    p.add_argument("--out", type=Path, help="run directory (default ~/.cache/binance-ingest/soak-<time>)")
    p.add_argument("--write-report", action="store_true", help="rewrite docs/reliability.md and .png from this run")
    p.add_argument("--render", type=Path, metavar="DIR", help="only rewrite the report from a finished run")
    p.add_argument("--reverify", type=Path, metavar="DIR",
                   help="verify a finished run again: restart its stack from DIR/stack (Kafka keeps its data) and "
                        "check the identity with the final scrape in DIR/result.json (or DIR/sidecar-final.json)")
    p.add_argument("--leak-run", type=Path, metavar="DIR", help="with --render: the deliberate-leak run")
    p.add_argument("--control-run", type=Path, metavar="DIR", help="with --render: the same run on the real code")
    p.add_argument("--worker-src", type=Path, default=REPO,
                   help="source tree the workers run from (a scratch copy, e.g. to prove a leak is caught)")
    return p.parse_args(argv)


# ---- processes --------------------------------------------------------------------------------------------------


def whole_capture(args: argparse.Namespace) -> bool:
    """Serve the whole 2021 capture (beside the clone in development) unless ``--symbols`` asks for a number."""
    return not args.symbols and CAPTURED_EXCHANGE_INFO.exists()


class SimCtl(Child):
    """The simulator with a sent-log; faults and listings through its control API."""

    def __init__(self, out: Path, args: argparse.Namespace, sent_log: Path, env: dict[str, str]) -> None:
        flags = ["--port", "0", "--exit-on-stdin-eof", "--seed", str(args.seed), "--interval", str(args.interval),
                 "--max-lifetime", str(args.max_lifetime), "--sent-log", str(sent_log),
                 "--duration", str(args.minutes * 60 + 1800), "--max-queue-frames", "100000"]
        if whole_capture(args):  # the whole 2021 market (1,262 TRADING symbols), not the 250 excerpt
            flags += ["--exchange-info", str(CAPTURED_EXCHANGE_INFO)]
        if args.symbols:  # from the packaged excerpt, which holds every TICKER_SYMBOLS (plus clones beyond 250)
            flags += ["--symbols", str(args.symbols)]
        super().__init__("sim", [sys.executable, "-m", "ingest.cli", "sim", *flags], out, env)
        assert self.proc.stdout is not None
        self.ws_url = self.proc.stdout.readline().strip()
        self.http_url = self.proc.stdout.readline().strip()
        if not self.ws_url.startswith("ws://"):
            raise RuntimeError(f"simulator did not start: {self.tail()}")

    def call(self, path: str, **params: Any) -> tuple[int, Any]:
        url = f"{self.http_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")[:300]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.http_url + path, timeout=30) as resp:
            return json.loads(resp.read())


class SoakWorker(Child):
    def __init__(self, index: int, out: Path, sim: SimCtl, stack: LocalStack, prefix: str, streams: str,
                 replicas: int, rotate_after: float, env: dict[str, str]) -> None:
        self.metrics_port = free_port()
        argv = [sys.executable, "-m", "ingest.cli", "run", "--streams", streams, "--ws-url", sim.ws_url,
                "--rest-url", sim.http_url, "--bootstrap-servers", stack.bootstrap_servers,
                "--schema-registry-url", stack.registry_url, "--topic-prefix", prefix,
                "--metrics-host", "127.0.0.1", "--metrics-port", str(self.metrics_port), "--log-format", "json",
                "--log-level", "INFO", "--exchange-info-refresh-s", "15", "--buffer-max-messages", "2000000",
                "--rotate-after-s", str(rotate_after)]
        if replicas > 1:
            argv += ["--coordination", "kafka"]
        # Started in the source tree it runs from: ``python -m`` puts the working directory first on sys.path,
        # ahead of PYTHONPATH, so from the repository a scratch copy (--worker-src) would never be imported.
        super().__init__(f"worker{index}", argv, out, env, cwd=Path(env.get("PYTHONPATH", str(REPO))))
        self.proc.stdout.close()  # type: ignore[union-attr]  # the worker logs to stderr

    def readyz(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=3) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.readyz() != 200:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in {timeout_s}s: {self.tail()}")
            time.sleep(0.5)


# ---- faults -----------------------------------------------------------------------------------------------------


class Injector:
    """Applies the plan: one thread per lane, so a broker outage can overlap a registry restart and any
    simulator fault. Every applied fault is a line in faults.jsonl with its real offset and outcome."""

    def __init__(self, sim: SimCtl, stack: LocalStack, t0: float, out: Path, seed: int, non_ascii: bool) -> None:
        self.sim, self.stack, self.t0 = sim, stack, t0
        self.log = (out / "faults.jsonl").open("w")
        self.lock = threading.Lock()
        self.listed = 0
        self.non_ascii = non_ascii
        info = sim.get("/api/v3/exchangeInfo")
        self.delistable = [s["symbol"] for s in info["symbols"]
                           if s["status"] == "TRADING" and s["symbol"] not in TICKER_SYMBOLS]
        self.delistable.reverse()  # the least known symbols first
        self.trading_at_start = sum(1 for s in info["symbols"] if s["status"] == "TRADING")
        self.counts: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.broker_down = threading.Event()

    def record(self, kind: str, params: dict[str, Any], result: Any, ok: bool, started: float) -> None:
        with self.lock:
            key = kind if ok else f"{kind} (failed)"
            (self.counts if ok else self.errors)[kind] = (self.counts if ok else self.errors).get(kind, 0) + 1
            self.log.write(json.dumps({"t": round(started - self.t0, 2), "took_s": round(time.time() - started, 2),
                                       "kind": key, "params": params, "result": result},
                                      ensure_ascii=False, default=str) + "\n")
            self.log.flush()

    def run(self, faults: list[soak_faults.Fault]) -> list[threading.Thread]:
        lanes: dict[str, list[soak_faults.Fault]] = {}
        for fault in faults:
            lane = fault.kind if fault.kind in ("broker_kill", "registry_restart") else "sim"
            lanes.setdefault(lane, []).append(fault)
        threads = [threading.Thread(target=self._lane, args=(lane,), name=f"faults-{name}", daemon=True)
                   for name, lane in lanes.items()]
        for t in threads:
            t.start()
        return threads

    def _lane(self, faults: list[soak_faults.Fault]) -> None:
        for fault in faults:
            delay = self.t0 + fault.at_s - time.time()
            if delay > 0:
                time.sleep(delay)
            started = time.time()
            try:
                ok, result = self.apply(fault)
            except Exception as exc:  # a fault that could not be applied is reported, the run goes on
                ok, result = False, repr(exc)[:300]
            self.record(fault.kind, fault.params, result, ok, started)

    def apply(self, fault: soak_faults.Fault) -> tuple[bool, Any]:
        kind, p = fault.kind, fault.params
        if kind == "broker_kill":
            self.broker_down.set()
            try:
                with self.lock:
                    self.stack.stop_kafka(signal.SIGKILL)
                time.sleep(p["down_s"])
                with self.lock:
                    self.stack.start_kafka()
                self.stack.wait_kafka_ready(time.monotonic() + 180)
            finally:
                self.broker_down.clear()
            return True, "restarted"
        if kind == "registry_restart":
            with self.lock:
                self.stack.stop_registry()
                self.stack.start_registry()
            self.stack.wait_registry_ready(time.monotonic() + 180)
            return True, "restarted"
        if kind == "abnormal_close":
            status, body = self.sim.call("/_sim/fault", type="close", code=p["code"])
        elif kind == "server_shutdown":
            status, body = self.sim.call("/_sim/fault", type="server_shutdown", grace=p["grace"])
        elif kind in ("silence", "slow", "duplicate", "malformed"):
            status, body = self.sim.call("/_sim/fault", type=kind, **p)
        elif kind in ("rest_429", "rest_418"):
            status, body = self.sim.call("/_sim/fault", type="rest", status=int(kind[-3:]), **p)
        elif kind == "listing":
            self.listed += 1
            base = f"{NON_ASCII_BASE}{self.listed}" if self.non_ascii and self.listed % 2 == 0 else f"SOAK{self.listed}"
            status, body = self.sim.call("/_sim/listing", symbol=f"{base}USDT", base=base, quote="USDT")
        elif kind == "delisting":
            if not self.delistable:
                return False, "nothing left to delist"
            status, body = self.sim.call("/_sim/delisting", symbol=self.delistable.pop())
        else:
            return False, f"unknown fault kind {kind}"
        return status == 200, body


# ---- sampling ---------------------------------------------------------------------------------------------------


def sample(workers: list[SoakWorker], sim: SimCtl, t0: float, previous: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"t": round(time.time() - t0, 2), "load1": os.getloadavg()[0], "workers": []}
    try:
        row["sim_tickers"] = sim.get("/_sim/stats")["tickers_sent"]["total"]
    except (OSError, ValueError, KeyError):
        row["sim_tickers"] = math.nan
    for w in workers:
        entry: dict[str, Any] = {"name": w.name, "alive": w.alive()}
        if w.alive():
            try:
                entry.update(soak_stats.proc_sample(w.proc.pid))
                metrics = soak_stats.metric_sample(soak_stats.scrape(w.metrics_port))
                buckets = metrics.pop("lag_buckets")
                before = previous.get(w.name)
                entry["lag_p50"], entry["lag_p99"] = (soak_stats.lag_quantiles(before, buckets) if before
                                                      else (math.nan, math.nan))
                previous[w.name] = buckets
                entry.update(metrics)
            except (OSError, ValueError, KeyError) as exc:
                entry["error"] = repr(exc)[:200]
        row["workers"].append(entry)
    return row


def summed_scrape(workers: list[SoakWorker]) -> dict[str, dict[str, float]]:
    total: dict[str, dict[str, float]] = {}
    for w in workers:
        for name, series in soak_stats.parse(soak_stats.scrape(w.metrics_port)).items():
            for labels, value in series.items():
                total.setdefault(name, {})[labels] = total.get(name, {}).get(labels, 0.0) + value
    return total


def drain(workers: list[SoakWorker], timeout_s: float = 300.0) -> dict[str, dict[str, float]]:
    """Wait until every producer queue is empty and the counters stopped moving; return the summed scrape."""
    keys = ("binance_ingest_records_produced_total", "binance_ingest_records_accepted_total",
            "binance_ingest_duplicates_suppressed_total", "binance_ingest_deadletter_total",
            "binance_ingest_records_dropped_total")
    deadline = time.monotonic() + timeout_s
    last: tuple[float, ...] = ()
    while True:
        final = summed_scrape(workers)
        now = tuple(sum(final.get(k, {}).values()) for k in keys)
        queue = sum(final.get("binance_ingest_producer_queue_messages", {}).values())
        if queue == 0 and now == last:
            return final
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workers never settled: queue {queue}, counters {now}")
        last = now
        time.sleep(3.0)


# ---- the run ----------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = args.out or CACHE / f"soak-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.minutes:g} min, {args.replicas} replica(s), seed {args.seed}; run directory {out}", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env["PYTHONPATH"] = str(args.worker_src.resolve())
    state_dir = out / "stack"
    state_dir.mkdir(exist_ok=True)
    (state_dir / "registry-jvm.options").write_text(
        f"-Dapicurio.datasource.url=jdbc:h2:file:{state_dir / 'registry-db'}\n")
    stack = LocalStack(state_dir)
    stack.up()
    sim: SimCtl | None = None
    workers: list[SoakWorker] = []
    started = time.time()
    git = _git_head()  # the code the workers run: taken at the start, later commits do not change the run
    try:
        sent_log = out / "sent.jsonl"
        sim = SimCtl(out, args, sent_log, env)
        non_ascii = args.non_ascii == "on"
        if args.non_ascii == "auto":  # does this simulator accept a non-ASCII listing? (probe with a status
            status, _ = sim.call("/_sim/listing", symbol=f"{NON_ASCII_BASE}0USDT", base=f"{NON_ASCII_BASE}0",
                                 quote="USDT", status="BREAK")  # that never ticks)
            non_ascii = status == 200
        prefix = f"soak{args.seed}"
        streams = ",".join(["!miniTicker@arr", *(f"{s.lower()}@ticker" for s in TICKER_SYMBOLS)])
        for i in range(args.replicas):
            workers.append(SoakWorker(i, out, sim, stack, prefix, streams, args.replicas,
                                      args.max_lifetime * 23 / 24, env))
        for w in workers:
            w.wait_ready()
        available = set(soak_faults.PER_HOUR) - ({"server_shutdown"} if "server_shutdown" not in FAULT_TYPES
                                                 else set())
        plan = soak_faults.plan(args.minutes, args.seed, available)
        t0 = time.time()
        injector = Injector(sim, stack, t0, out, args.seed, non_ascii)
        threads = injector.run(plan)
        print(f"soak: ready after {t0 - started:.0f}s; {len(plan)} faults planned: "
              f"{dict(sorted(_count(f.kind for f in plan).items()))}; non-ASCII listings: {non_ascii}", flush=True)
        previous: dict[str, Any] = {}
        with (out / "samples.jsonl").open("w") as samples:
            end = t0 + args.minutes * 60
            next_at = t0
            while time.time() < end or any(t.is_alive() for t in threads):
                row = sample(workers, sim, t0, previous)
                samples.write(json.dumps(row) + "\n")
                samples.flush()
                dead = [w.name for w in workers if not w.alive()]
                if dead:
                    raise RuntimeError(f"workers exited during the soak: {dead}: {workers[0].tail()}")
                next_at += args.sample_s
                time.sleep(max(0.0, next_at - time.time()))
        faulty_s = time.time() - t0
        print(f"soak: faults done after {faulty_s:.0f}s: {injector.counts}; failed: {injector.errors}", flush=True)
        sim.call("/_sim/fault", type="silence", seconds=3600)  # no frame in the air when the simulator stops
        time.sleep(1.0)
        sim_stats = sim.get("/_sim/stats")
        sim.stop()
        final = drain(workers)
        exit_codes = [w.stop(timeout_s=60) for w in workers]
        print("soak: input stopped, workers drained and stopped; verifying the whole run", flush=True)
        verdict = soak_verify.verify(sent_log, stack.bootstrap_servers, prefix, final)
        result = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  "out": str(out), "started": started, "faulty_s": faulty_s, "non_ascii": non_ascii,
                  "server_shutdown_available": "server_shutdown" in available,
                  "planned": _count(f.kind for f in plan), "applied": injector.counts, "failed": injector.errors,
                  "sim_stats": sim_stats, "exit_codes": exit_codes, "verdict": asdict(verdict),
                  "trading_symbols": injector.trading_at_start,
                  "exchange_info": ("the whole 2021 capture" if whole_capture(args)
                                    else "the packaged 2021 excerpt and its clones"),
                  "reconnects": {k.split('reason="')[1].rstrip('"'): v for k, v in
                                 final.get("binance_ingest_ws_reconnects_total", {}).items()},
                  "git": git, "final_metrics": {k: v for k, v in final.items()
                                                        if k.startswith("binance_ingest_")}}
    finally:
        for w in workers:
            w.stop(timeout_s=30)
        if sim is not None:
            sim.stop()
        stack.down()
    result["slopes"] = [asdict(s) for s in slopes(out / "samples.jsonl", args.minutes)]
    result["warmup_s"] = warmup_s(args.minutes)
    result["elapsed_s"] = time.time() - started
    (out / "result.json").write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str))
    return result


def slopes(samples_path: Path, minutes: float) -> list[soak_stats.Slope]:
    """Growth per hour of each watched series after warm-up, per worker."""
    rows = [json.loads(line) for line in samples_path.read_text().splitlines() if line.strip()]
    warmup = warmup_s(minutes)
    out = []
    names = [w["name"] for w in rows[0]["workers"]] if rows else []
    for i, name in enumerate(names):
        for series in soak_stats.GROWTH_TOLERANCE:
            pts = [(r["t"], r["workers"][i].get(series, math.nan)) for r in rows if len(r["workers"]) > i]
            # one state entry per listed symbol and kind (miniticker, and ticker through the snapshots)
            expected = 2 * soak_faults.PER_HOUR["listing"] if series == "symbol_state" else 0.0
            fit = soak_stats.slope(series, [t for t, _ in pts], [v for _, v in pts], warmup,
                                   expected_per_hour=expected)
            fit.name = f"{name}.{series}"
            out.append(fit)
    return out


def warmup_s(minutes: float) -> float:
    """The part of the run the growth test ignores: caches, arenas, the first listings' state."""
    return max(60.0, 0.2 * minutes * 60)


def _clean_stops(run_dir: Path) -> list[int | None]:
    """Without the run's own record of exit codes: 0 for a worker whose log ends with its clean stop."""
    codes: list[int | None] = []
    for log in sorted(run_dir.glob("worker*.log")):
        codes.append(0 if '"event":"worker stopped"' in log.read_text(errors="replace")[-20000:] else None)
    return codes


def _count(kinds: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind in kinds:
        out[kind] = out.get(kind, 0) + 1
    return out


def _git_head() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False).stdout.strip()
    except OSError:
        return "?"


def summary(result: dict[str, Any]) -> tuple[bool, list[str]]:
    verdict = result["verdict"]
    lines = [f"applied faults: {result['applied']}", f"failed to apply: {result['failed']}",
             f"reconnects by reason: {result['reconnects']}"]
    lines += soak_verify.Verdict(**{**verdict, "kinds": [soak_verify.KindFigures(**k) for k in verdict["kinds"]]}
                                 ).lines()
    grows = []
    for s in result["slopes"]:
        fit = soak_stats.Slope(**s)
        lines.append(fit.line())
        if fit.grows:
            grows.append(fit.name)
    lines += [f"IDENTITY FAILURE: {f}" for f in verdict["failures"]]
    lines += [f"GROWTH: {name}" for name in grows]
    bad_exit = [c for c in result["exit_codes"] if c != 0]
    if bad_exit:
        lines.append(f"WORKER EXIT CODES: {result['exit_codes']}")
    ok = not verdict["failures"] and not grows and not bad_exit
    lines.append("soak: PASS" if ok else "soak: FAIL")
    return ok, lines


def reverify(run_dir: Path, seed: int) -> dict[str, Any]:
    """The end-of-run checks again, on a run's saved data: its sent-log, its stack's Kafka data, its final scrape
    (from result.json, or from a scrape kept by a watcher if the run died before writing it)."""
    path = run_dir / "result.json"
    if path.exists():
        result = json.loads(path.read_text())
    else:
        kept = json.loads((run_dir / "sidecar-final.json").read_text())
        final: dict[str, dict[str, float]] = {}
        for text in kept["metrics"].values():
            for name, series in soak_stats.parse(text).items():
                for labels, value in series.items():
                    final.setdefault(name, {})[labels] = final.get(name, {}).get(labels, 0.0) + value
        faults = [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines() if line.strip()]
        applied = _count(f["kind"] for f in faults if not f["kind"].endswith("(failed)"))
        failed = _count(f["kind"].removesuffix(" (failed)") for f in faults if f["kind"].endswith("(failed)"))
        samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines() if line]
        minutes = round(samples[-1]["t"] / 60)
        available = set(soak_faults.PER_HOUR) - ({"server_shutdown"} if "server_shutdown" not in FAULT_TYPES
                                                 else set())
        planned = _count(f.kind for f in soak_faults.plan(minutes, seed, available))
        result = {"args": {"minutes": minutes, "replicas": len(samples[0]["workers"]), "seed": seed},
                  "out": str(run_dir), "started": (run_dir / "samples.jsonl").stat().st_ctime - samples[-1]["t"],
                  "faulty_s": samples[-1]["t"], "non_ascii": True, "planned": planned, "applied": applied,
                  "failed": failed, "sim_stats": kept["sim"], "exit_codes": _clean_stops(run_dir),
                  "reconnects": {k.split('reason="')[1].rstrip('"'): v for k, v in
                                 final.get("binance_ingest_ws_reconnects_total", {}).items()},
                  "git": _git_head(), "final_metrics": final}
    started = time.time()
    stack = LocalStack(run_dir / "stack")
    stack.up()
    try:
        prefix = f"soak{result['args']['seed']}"
        verdict = soak_verify.verify(run_dir / "sent.jsonl", stack.bootstrap_servers, prefix,
                                     result["final_metrics"])
    finally:
        stack.down()
    result["verdict"] = asdict(verdict)
    result["slopes"] = [asdict(s) for s in slopes(run_dir / "samples.jsonl", result["args"]["minutes"])]
    result["warmup_s"] = warmup_s(result["args"]["minutes"])
    result["reverified_s"] = time.time() - started
    result.setdefault("elapsed_s", result["faulty_s"])
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str))
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reverify:
        result = reverify(args.reverify, args.seed)
        ok, lines = summary(result)
        print("\n".join(lines), flush=True)
        return 0 if ok else 1
    if args.render:
        from bench import soak_report
        result = json.loads((args.render / "result.json").read_text())
        soak_report.write(result, args.render, REPO / "docs" / "reliability.md", REPO / "docs" / "reliability.png",
                          args.leak_run, args.control_run)
        return 0
    result = run(args)
    ok, lines = summary(result)
    print("\n".join(lines), flush=True)
    if args.write_report:
        from bench import soak_report
        soak_report.write(result, Path(result["out"]), REPO / "docs" / "reliability.md",
                          REPO / "docs" / "reliability.png")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
