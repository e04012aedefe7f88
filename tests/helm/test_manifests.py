"""What the rendered manifests promise operators: probes, hardening, secret mounts, labels, monitoring
toggles, hook order and graceful termination. Each test reads the real `helm template` output."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.tooling import (
    CHART,
    CI_VALUES,
    KUBE_VERSIONS,
    by_kind,
    ci_values,
    helm,
    one,
    render,
    settings,
    template_args,
)

WORKER_SELECTOR = {"app.kubernetes.io/name": "binance-ingest", "app.kubernetes.io/instance": "rel",
                   "app.kubernetes.io/component": "worker"}


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return pod.get("initContainers", []) + pod["containers"]


def pods(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")]


def test_probes_hit_healthz_and_readyz_on_the_metrics_port() -> None:
    docs = render(ci_values("defaults"))
    worker = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert worker["ports"] == [{"name": "metrics", "containerPort": 9108, "protocol": "TCP"}]
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert worker["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert worker["args"] == ["run", "--config", "/etc/binance-ingest/config/config.yaml"]
    assert {"name": "config", "mountPath": "/etc/binance-ingest/config", "readOnly": True} in worker["volumeMounts"]


def test_metrics_port_follows_the_setting_everywhere() -> None:
    docs = render(ci_values("defaults"), sets=("config.metricsPort=9200",))
    worker = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert worker["ports"][0]["containerPort"] == 9200
    # In the env, not the config file: the image's HEALTHCHECK reads INGEST_METRICS_PORT.
    assert {"name": "INGEST_METRICS_PORT", "value": "9200"} in worker["env"]
    assert "INGEST_METRICS_PORT" not in settings(docs)
    assert one(docs, "Service")["spec"]["ports"][0]["targetPort"] == "metrics"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_every_pod_is_hardened(values: Path) -> None:
    for pod in pods(render(values)):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in containers(pod):
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], "read-only root needs /tmp"
            assert container["resources"]["requests"] and container["resources"]["limits"]


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_termination_grace_exceeds_the_worker_flush_grace(values: Path) -> None:
    docs = render(values)
    grace = float(settings(docs)["INGEST_SHUTDOWN_GRACE_S"])
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > math.ceil(grace)


def test_tls_secret_is_mounted_read_only_where_the_settings_point() -> None:
    docs = render(ci_values("sasl-ssl"))
    data = settings(docs)
    for pod in pods(docs):
        volume = next(v for v in pod["volumes"] if v["name"] == "kafka-tls")
        assert volume["secret"]["secretName"] == "kafka-tls"
        assert volume["secret"]["defaultMode"] == 0o440
        assert pod["securityContext"]["fsGroup"] == 10001, "group-readable files need the pod's fsGroup"
        mounted = {item["path"] for item in volume["secret"]["items"]}
        for container in containers(pod):
            mount = next(m for m in container["volumeMounts"] if m["name"] == "kafka-tls")
            assert mount["readOnly"] is True
            env = {e["name"]: e.get("value") for e in container.get("env", [])} | data
            for setting in ("INGEST_KAFKA_SSL_CA_LOCATION", "INGEST_KAFKA_SSL_CERTIFICATE_LOCATION",
                            "INGEST_KAFKA_SSL_KEY_LOCATION"):
                directory, _, name = env[setting].rpartition("/")
                assert directory == mount["mountPath"] and name in mounted, setting


def test_no_secret_material_without_tls_or_sasl() -> None:
    docs = render(ci_values("defaults"))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "config"]
    assert [e["name"] for e in pod["containers"][0]["env"]] == ["INGEST_METRICS_PORT"]
    assert not any(k.startswith(("INGEST_KAFKA_SSL", "INGEST_KAFKA_SASL")) for k in settings(docs))


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_labels_and_selectors_line_up(values: Path) -> None:
    docs = render(values)
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "binance-ingest"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "binance-ingest-0.1.0"
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["selector"]["matchLabels"] == WORKER_SELECTOR
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert WORKER_SELECTOR.items() <= pod_labels.items()
    assert one(docs, "Service")["spec"]["selector"] == WORKER_SELECTOR
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"] == WORKER_SELECTOR
    for spread in deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        assert spread["labelSelector"]["matchLabels"] == WORKER_SELECTOR
    for job in by_kind(docs, "Job"):
        job_labels = job["spec"]["template"]["metadata"]["labels"]
        assert job_labels["app.kubernetes.io/component"] == "seed", "the Service must not select seed pods"
    for policy in by_kind(docs, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
        for job in by_kind(docs, "Job"):
            assert selector.items() <= job["spec"]["template"]["metadata"]["labels"].items()


def test_monitoring_is_off_by_default() -> None:
    kinds = {d["kind"] for d in render(ci_values("defaults"))}
    assert kinds == {"ConfigMap", "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"}


def test_service_monitor_scrapes_the_metrics_service() -> None:
    docs = render(ci_values("monitoring"))
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"] == WORKER_SELECTOR
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["market"]}
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s",
                                            "scrapeTimeout": "5s"}]
    service_ports = {p["name"] for p in one(docs, "Service")["spec"]["ports"]}
    assert "metrics" in service_ports
    assert one(docs, "Service")["spec"]["publishNotReadyAddresses"] is True


def test_prometheus_rule_carries_the_alerts_file_unchanged() -> None:
    rules_file = CHART / "files" / "alerts.yaml"
    rule = one(render(ci_values("monitoring")), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(rules_file.read_text())["groups"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_dashboard_configmap_is_for_the_grafana_sidecar() -> None:
    dashboard_file = CHART / "files" / "dashboard.json"
    docs = render(ci_values("monitoring"))
    dashboard = next(cm for cm in by_kind(docs, "ConfigMap") if cm["metadata"]["name"].endswith("-dashboard"))
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "market", "the release namespace (a fresh cluster has no other)"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Market data"}
    assert json.loads(dashboard["data"]["binance-ingest.json"]) == json.loads(dashboard_file.read_text())


def test_seeding_hook_runs_seed_then_schema_check_before_the_release() -> None:
    docs = render(ci_values("sasl-ssl"))
    job = one(docs, "Job")
    account = next(a for a in by_kind(docs, "ServiceAccount") if a["metadata"]["name"].endswith("-seed"))
    for hook in (job, account):
        assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    weight = {d["kind"]: int(d["metadata"]["annotations"]["helm.sh/hook-weight"]) for d in (job, account)}
    assert weight["ServiceAccount"] < weight["Job"], "the Job's ServiceAccount must exist first"
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["restartPolicy"] == "Never"
    assert [c["args"] for c in pod["initContainers"]] == [["topics", "seed"]]
    assert [c["args"] for c in pod["containers"]] == [["schemas", "check"]]
    # Hooks run before the ConfigMap exists, so the Job must carry every setting inline.
    for container in containers(pod):
        assert "envFrom" not in container
        inline = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        assert inline.items() >= settings(docs).items()


def test_seeding_without_schema_check_and_with_an_existing_account() -> None:
    docs = render(ci_values("ha"))
    pod = one(docs, "Job")["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert [c["args"] for c in pod["containers"]] == [["topics", "seed"]]
    assert pod["serviceAccountName"] == "market-data"
    assert not by_kind(docs, "ServiceAccount")


def test_ha_mode_runs_two_spread_replicas() -> None:
    docs = render(ci_values("ha"))
    spec = one(docs, "Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["template"]["spec"]["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule"
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_network_policy_allows_only_metrics_in_and_dns_binance_kafka_registry_out() -> None:
    policy = one(render(ci_values("sasl-ssl")), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
    ports = [sorted(p["port"] for p in rule["ports"]) for rule in policy["egress"]]
    assert ports == [[53, 53], [443, 9443], [9093], [443]]
    assert policy["egress"][2]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]


def test_config_change_rolls_the_pods() -> None:
    def checksum(*sets: str) -> str:
        docs = render(ci_values("defaults"), sets=sets)
        return one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum() != checksum('config.logLevel="DEBUG"')


def test_packaged_chart_renders_the_same(tmp_path: Path) -> None:
    """`helm package` keeps everything the templates read (files/, schema): .helmignore drops nothing needed."""
    helm("package", str(CHART), "-d", str(tmp_path))
    (archive,) = tmp_path.glob("binance-ingest-*.tgz")
    args = template_args((ci_values("monitoring"),), (), KUBE_VERSIONS[-1])
    args[2] = str(archive)
    packaged = [doc for doc in yaml.safe_load_all(helm(*args).stdout) if doc]
    assert packaged == render(ci_values("monitoring"))
