"""The chart and ingest/config.py agree: every env var the chart sets is one `ingest run` accepts, the
worker loads the rendered config file and environment without error (the Deployment through `--config`, the
seeding Job through env vars: both give the same settings), and every worker option can be set from values.

The worker refuses unknown INGEST_* variables and config-file keys at start, so a chart that set one would
crash-loop.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest import config
from tests.helm.tooling import CHART, CI_VALUES, by_kind, one, render, settings

# Options the chart sets on purpose by other means, each with its reason.
NOT_IN_CONFIG_VALUES = {
    "bootstrap_servers": "kafka.bootstrapServers",
    "schema_registry_url": "schemaRegistry.url",
    "schema_registry_user_info": "schemaRegistry.auth.existingSecret (a Secret, never a value)",
    "metrics_host": "fixed by the worker default 0.0.0.0: the pod IP must serve probes and scrapes",
    "kafka_properties_file": "Kafka settings come as INGEST_KAFKA_* from kafka.* values and Secrets instead",
    "coordination": "coordination.enabled (tied to replicaCount by values.schema.json)",
    "coordination_group": "coordination.group",
    "coordination_shards": "coordination.shards",
    "coordination_session_timeout_s": "coordination.sessionTimeoutS",
}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")]


def environment(docs: list[dict[str, Any]], pod: dict[str, Any]) -> dict[str, str]:
    """The environment one pod's containers get: envFrom ConfigMaps plus env (Secret refs as placeholders)."""
    configmaps = {cm["metadata"]["name"]: cm["data"] for cm in by_kind(docs, "ConfigMap")}
    env: dict[str, str] = {}
    for container in pod.get("initContainers", []) + pod["containers"]:
        for source in container.get("envFrom", []):
            env.update(configmaps[source["configMapRef"]["name"]])
        for item in container.get("env", []):
            env[item["name"]] = item.get("value", "from-secret:secret")
    return env


def load_pod(docs: list[dict[str, Any]], pod: dict[str, Any], workdir: Path) -> config.Settings:
    """Load the settings of the pod's last container as the worker does: its env and, when its args name
    ``--config FILE``, the file from the ConfigMap volume mounted there (written to ``workdir``)."""
    container = pod["containers"][-1]
    args = container["args"]
    config_file = None
    if "--config" in args:
        path = Path(args[args.index("--config") + 1])
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        data = {cm["metadata"]["name"]: cm["data"] for cm in by_kind(docs, "ConfigMap")}[volume["configMap"]["name"]]
        config_file = workdir / path.name
        config_file.write_text(data[path.name])
    return config.load(argparse.Namespace(config=config_file), environment(docs, pod))


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_every_env_var_the_chart_sets_is_accepted_by_ingest_run(values: Path) -> None:
    docs = render(values)
    known = set(config.env_vars())
    pods = pod_specs(docs)
    assert pods
    for pod in pods:
        names = set(environment(docs, pod))
        unknown = sorted(n for n in names if n not in known and not n.startswith(config.KAFKA_ENV_PREFIX))
        assert not unknown, f"ingest run would refuse {unknown}"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_the_worker_and_the_job_load_the_same_settings(values: Path, tmp_path: Path) -> None:
    """Goes beyond names: values are parsed by the worker's own loader (types, choices, cross-checks), from the
    config file the Deployment mounts and from the env vars the seeding Job inlines, with the same result."""
    docs = render(values)
    deployment = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert "--config" in deployment["containers"][0]["args"]
    worker = load_pod(docs, deployment, tmp_path)
    config.require_kafka(worker)
    for pod in pod_specs(docs):
        assert load_pod(docs, pod, tmp_path) == worker


def test_rendered_values_reach_the_worker_unchanged(tmp_path: Path) -> None:
    """Number formatting is the classic Helm trap (604800000 -> 6.048e+08); the loader must read back our values."""
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    docs = render(CI_VALUES[0], sets=('config.tickerRetentionMs=2592000000', 'config.backoffMaxS=12.5',
                                      'config.streams=["btcusdt@ticker","ethusdt@miniTicker"]'))
    settings = load_pod(docs, pod_specs(docs)[0], tmp_path)
    assert settings.ticker_retention_ms == 2592000000
    assert settings.backoff_max_s == 12.5
    assert settings.streams == ["btcusdt@ticker", "ethusdt@miniTicker"]
    assert settings.topic_partitions == chart_values["topicPartitions"]
    assert settings.rotate_after_s == chart_values["rotateAfterS"]


def test_every_worker_option_can_be_set_from_values() -> None:
    config_values = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    schema = json.loads((CHART / "values.schema.json").read_text())
    schema_keys = set(schema["properties"]["config"]["properties"])
    expected = {camel(opt.name) for opt in config.OPTIONS if opt.name not in NOT_IN_CONFIG_VALUES}
    assert set(config_values) == expected, "values.yaml config: must have one key per worker option"
    assert schema_keys == expected, "values.schema.json config: must type every worker option"
    assert set(NOT_IN_CONFIG_VALUES) <= {opt.name for opt in config.OPTIONS}, "stale exclusion"


def test_required_settings_and_secrets_are_wired() -> None:
    """Kafka and registry addresses from values; SASL and registry auth only from Secrets, never as values."""
    docs = render(*[p for p in CI_VALUES if p.stem == "sasl-ssl-values"])
    cm = settings(docs)
    assert cm["KAFKA_BOOTSTRAP_SERVERS"].startswith("broker-0.kafka.example.com:9093")
    assert cm["SCHEMA_REGISTRY_URL"] == "https://registry.example.com"
    assert cm["INGEST_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs == {
        "INGEST_KAFKA_SASL_USERNAME": {"name": "kafka-credentials", "key": "user"},
        "INGEST_KAFKA_SASL_PASSWORD": {"name": "kafka-credentials", "key": "pass"},
        "INGEST_SCHEMA_REGISTRY_USER_INFO": {"name": "registry-credentials", "key": "user-info"},
    }
    assert not any(re.search("PASSWORD|USER_INFO|USERNAME", k) for k in cm)


def test_coordination_values_reach_the_worker(tmp_path: Path) -> None:
    """replicaCount > 1 is only allowed with coordination; the replicas must then really run coordinated."""
    ha = [p for p in CI_VALUES if p.stem == "ha-values"]
    docs = render(*ha, sets=("coordination.sessionTimeoutS=7.5", "coordination.group=\"md-ingest\""))
    loaded = load_pod(docs, pod_specs(docs)[0], tmp_path)
    assert (loaded.coordination, loaded.coordination_session_timeout_s, loaded.group_id) == ("kafka", 7.5, "md-ingest")
    assert loaded.coordination_shards == 12
    plain = load_pod(render(CI_VALUES[0]), pod_specs(render(CI_VALUES[0]))[0], tmp_path)
    assert plain.coordination == "off"
