"""`helm install` / `upgrade` / `uninstall` of every ci/*-values.yaml against a real kube-apiserver (issue 16).

One fresh cluster per module (tests/deploy/kube.py: etcd + kube-apiserver from scripts/kube-tools), the
Prometheus Operator CRDs installed first (the module pinned in tests/helm/tools.env), then per values set a
fresh namespace: install, upgrade with a changed value, uninstall. Every helm command must succeed and print
no warning (helm only warns about fields the server does not know; a warning means the manifest is wrong),
every hook Job must be completed and then deleted by helm's hook-delete-policy, every ServiceAccount a pod
runs under must exist, and after the uninstall the namespace must hold nothing (every namespaced resource
type the server serves is listed, CRD kinds included).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.kube import KubeApiServer, binaries_missing
from tests.helm.tooling import CHART, CI_VALUES, TOOLS_CACHE, crd_dir, helm_binary, missing_tool

pytestmark = [pytest.mark.kube]

# Helm relays the server's warnings through klog, e.g. `I1130 ... warnings.go:107] "Warning: unknown field ..."`.
WARNING = re.compile(r"Warning:|^W\d{4} ", re.MULTILINE)
# Cluster-side stand-ins of the chart's external dependencies for the ci values sets.
PREREQUISITES = {"ha": [("ServiceAccount", "market-data")]}


class CrdLoader(yaml.SafeLoader):
    """SafeLoader that reads a bare ``=`` as the string it is (YAML 1.1's "value" tag, in some CRD enums)."""


CrdLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    missing = binaries_missing()
    if missing:
        missing_tool(f"{missing} (kube-apiserver/etcd: run `bash scripts/kube-tools`)")
    server = KubeApiServer(tmp_path_factory.mktemp("kube"))
    try:
        server.start()
        print(f"\n[kube] kube-apiserver ready in {server.ready_s:.1f}s at {server.url}")
        for path in sorted(crd_dir().glob("*.yaml")):
            server.apply_crd(yaml.load(path.read_text(), Loader=CrdLoader))  # a SafeLoader subclass
        yield server
    finally:
        server.stop()


class HookCompleter:
    """While helm waits for a hook Job, completes it through the status subresource (no Job controller here)."""

    def __init__(self, cluster: KubeApiServer, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.completed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            self.completed += self.cluster.complete_hook_jobs(self.namespace)

    def __enter__(self) -> HookCompleter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def run_helm(cluster: KubeApiServer, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    home = TOOLS_CACHE / "helm-home"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}
    proc = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stderr}"
        warnings = WARNING.findall(proc.stdout + proc.stderr)
        assert not warnings, f"helm {' '.join(args)} warned:\n{proc.stderr}"
    return proc


def pods_of(manifest: str) -> list[dict[str, Any]]:
    out = []
    for doc in yaml.safe_load_all(manifest):
        if doc and doc["kind"] in ("Deployment", "Job"):
            out.append(doc["spec"]["template"]["spec"])
    return out


@pytest.mark.parametrize("values", CI_VALUES, ids=[p.name.removesuffix("-values.yaml") for p in CI_VALUES])
def test_install_upgrade_uninstall(cluster: KubeApiServer, values: Path) -> None:
    """Catches: manifests the API server refuses or only accepts with a warning, hooks that never complete or
    are left behind, references to namespaces or ServiceAccounts that do not exist, upgrade rules (immutable
    fields, selector changes), and objects an uninstall leaves behind."""
    name = values.name.removesuffix("-values.yaml")
    namespace = f"chart-{name}"
    cluster.create_namespace(namespace)
    # What a real cluster's controllers would have created in a new namespace (the "default" ServiceAccount),
    # plus what the values set says must exist beforehand.
    existing = [("ServiceAccount", "default"), *PREREQUISITES.get(name, [])]
    for kind, obj in existing:
        assert kind == "ServiceAccount"
        cluster.ok("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                   {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": obj}})
    before = cluster.objects_in(namespace)

    common = ["--namespace", namespace, "--timeout", "120s"]
    with HookCompleter(cluster, namespace) as hooks:
        run_helm(cluster, "install", "rel", str(CHART), "-f", str(values), *common)
        installed_hooks = list(hooks.completed)
        config_before = cluster.ok("GET", f"/api/v1/namespaces/{namespace}/configmaps/rel-binance-ingest")
        deployment_before = cluster.ok("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/rel-binance-ingest")
        run_helm(cluster, "upgrade", "rel", str(CHART), "-f", str(values), *common, "--reuse-values",
                 "--set", "config.logLevel=DEBUG")
        upgraded_hooks = hooks.completed[len(installed_hooks):]

    config = cluster.ok("GET", f"/api/v1/namespaces/{namespace}/configmaps/rel-binance-ingest")
    deployment = cluster.ok("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/rel-binance-ingest")
    log_levels = [yaml.safe_load(cm["data"]["config.yaml"])["log_level"] for cm in (config_before, config)]
    assert log_levels == ["INFO", "DEBUG"]
    checksum = "checksum/config"
    assert (deployment["spec"]["template"]["metadata"]["annotations"][checksum]
            != deployment_before["spec"]["template"]["metadata"]["annotations"][checksum]), "pods would not roll"
    assert deployment["metadata"]["generation"] == deployment_before["metadata"]["generation"] + 1

    manifest = run_helm(cluster, "get", "manifest", "rel", "--namespace", namespace).stdout
    hooks_manifest = run_helm(cluster, "get", "hooks", "rel", "--namespace", namespace).stdout
    seeding = "kind: Job" in hooks_manifest
    if seeding:
        assert installed_hooks and upgraded_hooks, (installed_hooks, upgraded_hooks)
    jobs = cluster.ok("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs")["items"]
    assert jobs == [], f"hook Jobs left after success: {[j['metadata']['name'] for j in jobs]}"
    accounts = {a["metadata"]["name"]
                for a in cluster.ok("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts")["items"]}
    for pod in pods_of(manifest + "\n---\n" + hooks_manifest):
        assert pod["serviceAccountName"] in accounts | {"rel-binance-ingest-seed"}, (pod["serviceAccountName"],
                                                                                     accounts)
    status = run_helm(cluster, "status", "rel", "--namespace", namespace).stdout
    assert "STATUS: deployed" in status and "REVISION: 2" in status, status

    run_helm(cluster, "uninstall", "rel", "--namespace", namespace, "--timeout", "120s")
    left = sorted(set(cluster.objects_in(namespace)) - set(before))
    assert left == [], f"left behind after uninstall: {left}"
    assert cluster.objects_in(namespace) == before
    print(f"\n[kube] {name}: install + upgrade + uninstall, no warnings; hook Jobs completed: install "
          f"{installed_hooks}, upgrade {upgraded_hooks}; nothing left in {namespace}")


def test_dashboard_in_another_namespace(cluster: KubeApiServer) -> None:
    """The defect the first real install found: a dashboard ConfigMap in a namespace that does not exist broke
    the install half-way. Now the default is the release namespace (ci/monitoring-values.yaml has no
    namespace); a namespace given explicitly must exist, and then install and uninstall manage it there."""
    values = CHART / "ci" / "monitoring-values.yaml"
    namespace, other = "chart-dashboard", "grafana"
    cluster.create_namespace(namespace)
    cluster.create_namespace(other)
    run_helm(cluster, "install", "rel", str(CHART), "-f", str(values), "--namespace", namespace,
             "--set", f"metrics.dashboard.namespace={other}")
    cluster.ok("GET", f"/api/v1/namespaces/{other}/configmaps/rel-binance-ingest-dashboard")
    run_helm(cluster, "uninstall", "rel", "--namespace", namespace)
    assert cluster.objects_in(other) == [] and cluster.objects_in(namespace) == []


def test_server_side_validation_is_real(cluster: KubeApiServer, tmp_path: Path) -> None:
    """Guards the tests above: the same server refuses an invalid Deployment (so acceptance means something),
    helm reports a missing namespace, and a manifest with a field the server does not know produces the
    warning the install test fails on."""
    namespace = "chart-invalid"
    cluster.create_namespace(namespace)
    chart = tmp_path / "typo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: typo\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\n"
                                                 "data: {}\nbinaryDatta: {}\n")
    typo = run_helm(cluster, "install", "typo", str(chart), "--namespace", namespace, check=False)
    assert typo.returncode == 0 and WARNING.search(typo.stderr), typo.stderr
    run_helm(cluster, "uninstall", "typo", "--namespace", namespace)
    status, body = cluster.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "c"}}, "spec": {"containers": [{"name": "x"}]}}}})
    assert status == 422, body
    proc = run_helm(cluster, "install", "rel", str(CHART), "-f", str(CHART / "ci" / "monitoring-values.yaml"),
                    "--namespace", namespace, "--set", "metrics.dashboard.namespace=does-not-exist", check=False)
    assert proc.returncode != 0 and 'namespaces "does-not-exist" not found' in proc.stderr, proc.stderr
