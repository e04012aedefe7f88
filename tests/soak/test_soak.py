"""CI's soak (issue 17): five minutes of compressed Binance life against real servers, then the accounting
identity over the whole run and a growth test of the worker's memory, FDs, threads, tasks, metric series and
connection objects (bench/soak.py; docs/reliability.md has the full 60-minute run).

Not a timed test: it fails on a broken identity, a duplicate or a key back in time in Kafka, a worker that did
not exit 0 after SIGTERM, or a series whose slope after warm-up is above its tolerance even at the lower bound
of its 95 % confidence interval. Its own private stack (the soak kills the broker), 300 symbols instead of the
whole market so that it fits next to the rest of CI on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim_fixture import require_captures

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.soak, pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]


@pytest.mark.timeout(1800)
def test_five_minute_soak_keeps_the_identity_and_grows_nothing(tmp_path: Path) -> None:
    require_captures()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    run_dir = tmp_path / "soak"
    out = subprocess.run([sys.executable, "-m", "bench.soak", "--minutes", "5", "--symbols", "300",
                          "--out", str(run_dir)], cwd=REPO, env=env, capture_output=True, text=True, timeout=1700)
    print(out.stdout[-6000:])
    result = json.loads((run_dir / "result.json").read_text())
    assert result["verdict"]["failures"] == [], out.stdout[-4000:]
    assert all(code == 0 for code in result["exit_codes"]), result["exit_codes"]
    assert sum(result["applied"].values()) >= 20, f"too few faults applied: {result['applied']}"
    grows = [s["name"] for s in result["slopes"] if s["points"] >= 3 and s["low"] > s["tolerance"]]
    assert not grows, f"growing after warm-up: {grows}\n{out.stdout[-4000:]}"
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
