"""One command for every benchmark, back to back in one run, so that the ratios compare like with like.

    .venv/bin/python -m bench.run            # full run, rewrites docs/performance.md and docs/performance.png
    .venv/bin/python -m bench.run --quick --no-write   # CI: checks that every part still runs (seconds)

Without --bootstrap/--registry it starts the local stack (Kafka + registry, ``ingest stack``) in its own
state directory and stops it at the end. Order: hot path (in process), end to end (worker, then the naive
pipeline, on identical simulator flags), latency at nominal load, peers. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

from bench import end_to_end, hot_path, latency, peers, report

REPO = Path(__file__).resolve().parents[1]
STACK_DIR = Path.home() / ".cache" / "binance-ingest" / "bench-stack"
LAST_RUN = Path.home() / ".cache" / "binance-ingest" / "bench-last-run.pickle"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="binance-ingest benchmarks (docs/performance.md)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and windows: only checks that all parts run")
    p.add_argument("--no-write", action="store_true", help="print only; do not rewrite docs/performance.*")
    p.add_argument("--render-only", action="store_true",
                   help=f"rewrite docs/performance.* from the last full run's numbers ({LAST_RUN}) without measuring")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: start the local stack)")
    p.add_argument("--registry", help="Schema Registry URL (default: the local stack's)")
    p.add_argument("--stack-dir", type=Path, default=STACK_DIR, help="state dir of the local stack it starts")
    p.add_argument("--e2e-window", type=float, default=30.0, help="seconds measured per end-to-end contender")
    p.add_argument("--lag-window", type=float, default=60.0, help="seconds measured at nominal load")
    p.add_argument("--sim-flags", default="--symbols 2000 --interval 0.02 --rate 90000",
                   help="simulator flags of the end-to-end runs (both contenders get the same)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:  # e.g. after editing the prose in bench/performance_template.md
        result = pickle.loads(LAST_RUN.read_bytes())  # our own file, written below
        report.write(result, REPO / "docs" / "performance.md", REPO / "docs" / "performance.png")
        print(report.ratio_table(result))
        return 0
    stack = None
    if not args.bootstrap:
        from ingest.devstack.stack import LocalStack
        stack = LocalStack(args.stack_dir)
        stack.up()
        args.bootstrap, args.registry = stack.bootstrap_servers, stack.registry_url
    quick = args.quick
    load_before = os.getloadavg()
    started = time.time()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    try:
        print(f"== hot path (logs of child processes in {log_dir})", flush=True)
        hot = hot_path.run(args.bootstrap, frames_per_kind=1 if quick else 10,
                           tickers_per_frame=200 if quick else 2000, repeats=1 if quick else 3)
        print(hot_path.table(hot), flush=True)

        sim_flags = ["--symbols", "300", "--interval", "0.05", "--rate", "6000"] if quick else args.sim_flags.split()
        warmup, window = (2.0, 3.0) if quick else (8.0, args.e2e_window)
        print(f"== end to end, simulator flags: {' '.join(sim_flags)}", flush=True)
        rows = [end_to_end.run_worker(log_dir, args.bootstrap, args.registry, sim_flags, warmup, window),
                end_to_end.run_naive(log_dir, args.bootstrap, args.registry, sim_flags, warmup, window)]
        print(end_to_end.table(rows), flush=True)

        print("== latency at nominal load", flush=True)
        lag = latency.run(log_dir, args.bootstrap, args.registry, symbols=300 if quick else 3000,
                          warmup_s=2.0 if quick else 8.0, window_s=3.0 if quick else args.lag_window)
        print(latency.table(lag), flush=True)

        print("== peers", flush=True)
        peer_rows = peers.probe()
        for peer in peer_rows:
            print(f"{peer.name}: {'ran' if peer.ran else 'not run'}: {peer.reason}", flush=True)

        command = " ".join([".venv/bin/python -m bench.run", *(argv if argv is not None else sys.argv[1:])])
        result = report.Run(hot=hot, e2e=rows, lag=lag, peers=peer_rows, sim_flags=" ".join(sim_flags),
                            command=command,
                            load_before=load_before, load_after=os.getloadavg(), seconds=time.time() - started,
                            quick=quick)
        print("== ratios", flush=True)
        print(report.ratio_table(result), flush=True)
        if not args.no_write:
            LAST_RUN.parent.mkdir(parents=True, exist_ok=True)
            LAST_RUN.write_bytes(pickle.dumps(result))
            report.write(result, REPO / "docs" / "performance.md", REPO / "docs" / "performance.png")
            print("wrote docs/performance.md and docs/performance.png", flush=True)
    finally:
        if stack is not None:
            stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
