"""Lint the chart and validate every rendered manifest against the Kubernetes and CRD schemas.

Core kinds are checked with kubernetes-validate's bundled OpenAPI schemas in strict mode (an unknown
field is an error) for the oldest and a current Kubernetes minor; ServiceMonitor and PrometheusRule
against the openAPIV3Schema of the Prometheus Operator's own CRD files.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.helm.tooling import CHART, CI_VALUES, KUBE_VERSIONS, crd_dir, helm, render

CRD_FILES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}


@cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((crd_dir() / CRD_FILES[(api_version, kind)]).read_text())
    version = api_version.split("/")[1]
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return served["schema"]["openAPIV3Schema"]
    raise AssertionError(f"{kind} CRD has no version {version}")


def validate(doc: dict[str, Any], kube_version: str) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key in CRD_FILES:
        jsonschema.Draft7Validator(crd_schema(*key)).validate(doc)
    else:
        kubernetes_validate.validate(doc, kube_version, strict=True)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_helm_lint_is_clean(values: Path) -> None:
    proc = helm("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSIONS[-1], "-f", str(values))
    assert "0 chart(s) failed" in proc.stdout, proc.stdout


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_every_manifest_matches_its_schema(values: Path, kube_version: str) -> None:
    docs = render(values, kube_version=kube_version)
    assert docs, "nothing rendered"
    for doc in docs:
        try:
            validate(doc, kube_version)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
            path = ".".join(str(p) for p in exc.absolute_path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {kube_version} at {path}: "
                        f"{exc.message}")


def test_the_validators_catch_a_broken_manifest() -> None:
    """Guards the test above: strict core validation and the CRD schemas both reject a wrong field."""
    docs = render(CI_VALUES[0])
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {"path": "/healthz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, KUBE_VERSIONS[-1])
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"},
               "spec": {"selector": {}, "endpoints": [{"port": "metrics", "interval": 30}]}}
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, KUBE_VERSIONS[-1])
