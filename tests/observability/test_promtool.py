"""The alert rules checked and unit-tested by Prometheus' own promtool (installed by .ci/setup)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "helm/binance-ingest/files/alerts.yaml"
ALERT_TESTS = ROOT / "tests/observability/alerts_test.yaml"
RUNBOOK = ROOT / "docs/runbook.md"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: run bash .ci/setup (installs Debian's prometheus package)"
    return path


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_promtool_check_rules() -> None:
    result = run("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run("test", "rules", ALERT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert names == firing, "every alert needs a case where it fires"
    assert names == silent, "every alert needs a case where it stays silent"


@pytest.mark.parametrize("alert", [rule["alert"] for rule in rules()])
def test_each_firing_case_depends_on_its_expression(alert: str, tmp_path: Path) -> None:
    """Replace one alert's expression by one that never fires: its promtool test must then fail."""
    doc = yaml.safe_load(ALERTS.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = "vector(0) > 1"
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(doc))
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    tests["rule_files"] = [str(tmp_path / "alerts.yaml")]
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(tests))
    result = run("test", "rules", tmp_path / "alerts_test.yaml")
    assert result.returncode != 0
    assert f"alertname: {alert}," in result.stdout + result.stderr


def test_every_alert_has_severity_summary_and_a_runbook_section() -> None:
    runbook = RUNBOOK.read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", runbook, re.MULTILINE)}
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"]
        url = ann["runbook_url"]
        assert url.endswith("docs/runbook.md#" + rule["alert"].lower()), url
        assert rule["alert"].lower() in anchors, f"docs/runbook.md has no section {rule['alert']}"
