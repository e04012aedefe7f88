"""Where the chart tests find helm, the CRD schemas and the chart, and how they render it.

The tools are installed by .ci/setup (pinned in tools.env) under ~/.cache/binance-ingest, so CI and a
developer machine use the same binaries. Rendering goes through the real ``helm template``: the tests
check what a cluster would receive, not a re-implementation of the templates.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# Overridable to test another copy of the chart (e.g. an unpacked `helm package` archive).
CHART = Path(os.environ.get("BINANCE_INGEST_CHART", REPO / "helm" / "binance-ingest"))
CI_VALUES = sorted(CHART.glob("ci/*-values.yaml"))
TOOLS_CACHE = Path.home() / ".cache" / "binance-ingest"
# Oldest Kubernetes minor the chart supports (Chart.yaml kubeVersion) and a current one.
KUBE_VERSIONS = ("1.25.0", "1.33.0")


def pins() -> dict[str, str]:
    """The KEY=VALUE pins of tools.env (the same file .ci/setup sources)."""
    out = {}
    for line in (Path(__file__).parent / "tools.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def missing_tool(what: str) -> None:
    """A missing tool fails in CI (CI=true) and skips with the reason only on a developer machine."""
    message = f"{what}: run `bash .ci/setup` to install it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def helm_binary() -> Path:
    path = TOOLS_CACHE / "bin" / "helm"
    if not path.is_file():
        missing_tool(f"helm {pins()['HELM_VERSION']} not found at {path}")
    return path


def crd_dir() -> Path:
    version = pins()["PROMETHEUS_OPERATOR_VERSION"]
    path = (TOOLS_CACHE / "go" / "mod" / "github.com" / "prometheus-operator"
            / f"prometheus-operator@{version}" / "example" / "prometheus-operator-crd")
    if not path.is_dir():
        missing_tool(f"Prometheus Operator CRDs {version} not found at {path}")
    return path


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm with a private home so no user or machine config changes the result."""
    home = TOOLS_CACHE / "helm-home"
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    proc = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def template_args(values: tuple[Path, ...], sets: tuple[str, ...], kube_version: str) -> list[str]:
    args = ["template", "rel", str(CHART), "--namespace", "market", "--kube-version", kube_version]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set-json", item]
    return args


@cache
def _render(values: tuple[Path, ...], sets: tuple[str, ...], kube_version: str) -> tuple[dict[str, Any], ...]:
    out = helm(*template_args(values, sets, kube_version)).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def render(*values: Path, sets: tuple[str, ...] = (), kube_version: str = KUBE_VERSIONS[-1]) -> list[dict[str, Any]]:
    """Rendered manifests (cached per arguments; callers must not mutate them). ``sets`` are --set-json items."""
    return list(_render(tuple(values), tuple(sets), kube_version))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def ci_values(name: str) -> Path:
    path = CHART / "ci" / f"{name}-values.yaml"
    assert path.is_file(), path
    return path


def config_file(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The worker's config file (config.yaml of the settings ConfigMap; the dashboard ConfigMap is the other one)."""
    found = [cm for cm in by_kind(docs, "ConfigMap") if not cm["metadata"]["name"].endswith("-dashboard")]
    assert len(found) == 1, found
    assert set(found[0]["data"]) == {"config.yaml"}, found[0]["data"].keys()
    return yaml.safe_load(found[0]["data"]["config.yaml"])


def settings(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The worker's config file as the INGEST_* environment it is equivalent to (names from ingest/config.py,
    values spelled as the chart spells env vars): what the seeding Job must carry inline."""
    from ingest import config

    by_name = {opt.name: opt for opt in config.OPTIONS}
    env: dict[str, str] = {}
    for key, value in config_file(docs).items():
        if key == config.CONFIG_FILE_KAFKA_SECTION:
            env.update({config.KAFKA_ENV_PREFIX + k.upper().replace(".", "_"): _env_text(v) for k, v in value.items()})
        else:
            env[by_name[key].env_var] = _env_text(value)
    return env


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)
