"""Bad values fail `helm template` (and so `helm install`) with the schema's message, before any
manifest reaches a cluster. Each case is a values file written to a temporary directory, as a user would."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helm.tooling import KUBE_VERSIONS, ci_values, helm, template_args

BASE = {"kafka": {"bootstrapServers": "kafka:9092"}, "schemaRegistry": {"url": "http://registry:8081"}}

REJECTED = {
    "wrong type": ({"config": {"topicPartitions": "six"}}, "at '/config/topicPartitions': got string, want integer"),
    "unknown key": ({"config": {"topicPartitionz": 6}}, "additional properties 'topicPartitionz' not allowed"),
    "unknown top-level key": ({"replicas": 2}, "additional properties 'replicas' not allowed"),
    "bad choice": ({"config": {"bufferPolicy": "drop_all"}}, "at '/config/bufferPolicy'"),
    "replicas without coordination": ({"replicaCount": 2}, "at '/replicaCount': value must be 1"),
    "SASL without a Secret": ({"kafka": {"bootstrapServers": "kafka:9092", "securityProtocol": "SASL_SSL"}},
                              "at '/kafka/sasl/existingSecret'"),
    "a property the worker owns": ({"kafka": {"bootstrapServers": "kafka:9092", "properties": {"acks": "1"}}},
                                   "at '/kafka/properties/acks': false schema"),
    "a property the chart sets": ({"kafka": {"bootstrapServers": "kafka:9092",
                                             "properties": {"sasl.password": "x"}}},
                                  "at '/kafka/properties/sasl.password': false schema"),
    "an underscored property name": ({"kafka": {"bootstrapServers": "kafka:9092",
                                                "properties": {"linger_ms": "5"}}},
                                     "invalid propertyName 'linger_ms'"),
    "a client cert without its key": ({"kafka": {"bootstrapServers": "kafka:9092",
                                                 "tls": {"existingSecret": "t", "certKey": "tls.crt"}}},
                                      "at '/kafka/tls"),
    "no bootstrap servers": ({"kafka": {"bootstrapServers": ""}}, "at '/kafka/bootstrapServers'"),
    "a metrics port of 0": ({"config": {"metricsPort": 0}}, "at '/config/metricsPort'"),
}


def merged(override: dict) -> dict:
    out = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in override.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and key in out else value
    return out


@pytest.mark.parametrize("case", REJECTED, ids=str)
def test_bad_values_fail_with_the_schema_message(case: str, tmp_path: Path) -> None:
    override, message = REJECTED[case]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(merged(override)))
    proc = helm(*template_args((values,), (), KUBE_VERSIONS[-1]), check=False)
    assert proc.returncode != 0, f"{case}: accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


def test_the_base_of_those_cases_is_accepted(tmp_path: Path) -> None:
    """So each rejection above is caused by its own override, not by the base."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(BASE))
    helm(*template_args((values,), (), KUBE_VERSIONS[-1]))


def test_several_replicas_are_accepted_with_coordination() -> None:
    helm(*template_args((ci_values("ha"),), (), KUBE_VERSIONS[-1]))
