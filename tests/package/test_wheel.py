"""The package as a user installs it: `python -m build` makes a wheel and an sdist; the wheel, installed into a
fresh venv and run from a directory outside the repository, runs `ingest demo --duration 15` and shows real
symbol names (the simulator's exchangeInfo is package data, not a file of the repository).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
EXCERPT = REPO / "ingest" / "sim" / "data" / "exchangeInfo-2021-10-12-excerpt.json"


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_built_wheel_runs_the_demo_outside_the_repo(tmp_path):
    dist = tmp_path / "dist"
    # No --wheel/--sdist: build makes the sdist, then the wheel from the sdist, so the sdist is proved complete.
    _run([sys.executable, "-m", "build", "--outdir", str(dist)], cwd=REPO)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    wheel = dist / f"binance_ingest-{version}-py3-none-any.whl"
    assert wheel.exists() and (dist / f"binance_ingest-{version}.tar.gz").exists(), sorted(os.listdir(dist))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("ingest/sim/data/exchangeInfo-2021-10-12-excerpt.json", "ingest/schemas/Ticker.avsc",
                   "ingest/devstack/kafka-pom.xml"):
        assert needed in names

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=outside)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], cwd=outside)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INGEST_", "PYTHON", "VIRTUAL_ENV")) and k not in ("KAFKA_BOOTSTRAP_SERVERS",
                                                                                  "SCHEMA_REGISTRY_URL")}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")  # its own demo stack; the jar cache (~/.cache) is reused
    where = _run([str(venv / "bin" / "python"), "-c", "import ingest; print(ingest.__file__, ingest.__version__)"],
                 cwd=outside, env=env).stdout.split()
    assert where[0].startswith(str(venv)) and where[1] == version

    demo = _run([str(venv / "bin" / "ingest"), "demo", "--duration", "15"], cwd=outside, env=env, timeout=600)
    real = {entry["symbol"] for entry in json.loads(EXCERPT.read_text())["symbols"]}
    rows = [line.split()[0] for line in demo.stdout.splitlines() if re.match(r"^[A-Z0-9]+\s+\d", line)]
    assert rows, f"no table rows in the demo's output:\n{demo.stdout[-2000:]}\n{demo.stderr[-2000:]}"
    assert set(rows) <= real, f"names not in the real excerpt: {set(rows) - real}"
    assert "everything it started is stopped" in demo.stderr
