"""One version: pyproject.toml's project.version; the installed metadata, `ingest --version`, the Helm chart's
appVersion (the default image tag) and the newest CHANGELOG.md section all say the same."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

import ingest
from ingest.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_every_place_that_shows_the_version_agrees_with_pyproject(capsys):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert ingest.__version__ == version, "stale install: rerun .ci/setup (pip install -e .)"
    chart = yaml.safe_load((ROOT / "helm/binance-ingest/Chart.yaml").read_text())
    assert chart["appVersion"] == version
    newest = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert newest is not None and newest.group(1) == version
    parser, _ = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"ingest {version}"
