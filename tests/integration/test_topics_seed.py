"""`ingest topics seed` against real Kafka + registry + simulator: topics, configs, the symbols table."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from tests.kafka_reading import RegistryDecoder, read_all

pytestmark = pytest.mark.integration


def _seed(stack_endpoints, sim, prefix: str, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=stack_endpoints.bootstrap_servers,
               SCHEMA_REGISTRY_URL=stack_endpoints.registry_url)
    return subprocess.run([sys.executable, "-m", "ingest.cli", "topics", "seed", "--rest-url", sim.http_url,
                           "--topic-prefix", prefix, "--log-format", "json", *extra],
                          capture_output=True, text=True, timeout=120, env=env)


def test_seed_creates_topics_and_publishes_every_symbol(sim_factory, stack_endpoints, unique_prefix):
    sim = sim_factory(symbols=5, interval=1.0, seed=1)
    result = _seed(stack_endpoints, sim, unique_prefix, "--topic-partitions", "3")
    assert result.returncode == 0, result.stderr

    admin = AdminClient({"bootstrap.servers": stack_endpoints.bootstrap_servers})
    topics = admin.list_topics(timeout=10).topics
    for kind, partitions, policy in (("miniticker", 3, "delete"), ("ticker", 3, "delete"),
                                     ("symbols", 3, "compact"), ("deadletter", 1, "delete")):
        name = f"{unique_prefix}.{kind}"
        assert len(topics[name].partitions) == partitions
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        configs = admin.describe_configs([resource])[resource].result(timeout=10)
        assert configs["cleanup.policy"].value == policy

    _, _, info = sim.request("/api/v3/exchangeInfo")
    records = read_all(stack_endpoints.bootstrap_servers, f"{unique_prefix}.symbols")
    assert sorted(r.key.decode() for r in records) == sorted(s["symbol"] for s in info["symbols"])
    decoder = RegistryDecoder(stack_endpoints.registry_url)
    by_symbol = {r.key.decode(): decoder.decode(r.raw)[1] for r in records}
    first = info["symbols"][0]
    got = by_symbol[first["symbol"]]
    assert got["status"] == first["status"] and got["base_asset"] == first["baseAsset"]
    assert [f["filter_type"] for f in got["filters"]] == [f["filterType"] for f in first["filters"]]


def test_seed_again_warns_on_mismatch_and_strict_fails(sim_factory, stack_endpoints, unique_prefix):
    sim = sim_factory(symbols=3, interval=1.0, seed=2)
    assert _seed(stack_endpoints, sim, unique_prefix, "--topic-partitions", "2").returncode == 0
    again = _seed(stack_endpoints, sim, unique_prefix, "--topic-partitions", "4")
    assert again.returncode == 0
    assert f"warning: topic {unique_prefix}.ticker has 2 partitions, configured 4" in again.stdout
    strict = _seed(stack_endpoints, sim, unique_prefix, "--topic-partitions", "4", "--strict")
    assert strict.returncode == 1
