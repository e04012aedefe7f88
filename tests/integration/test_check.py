"""`ingest check` against the real stack and the simulator: the right line and exit code per case, and nothing
created (no topic, no subject under the test's prefix) whatever the outcome."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from ingest.avro import load_schema, make_client, register_schemas
from ingest.devstack.stack import free_port
from tests.sim_fixture import EXCHANGE_INFO_EXCERPT

pytestmark = pytest.mark.integration

CCOMPAT = "/apis/ccompat/v7"


@pytest.fixture
def sim(sim_factory):
    return sim_factory(exchange_info=EXCHANGE_INFO_EXCERPT, interval=1.0, seed=3, sent_log=False)


def run_check(stack_endpoints, sim, prefix: str, *extra: str, bootstrap: str | None = None,
              registry: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap or stack_endpoints.bootstrap_servers,
               SCHEMA_REGISTRY_URL=registry or stack_endpoints.registry_url)
    return subprocess.run([sys.executable, "-m", "ingest.cli", "check", "--rest-url", sim.http_url,
                           "--ws-url", sim.ws_url, "--topic-prefix", prefix, "--metrics-port", "0",
                           "--timeout-s", "5", *extra], capture_output=True, text=True, timeout=120, env=env)


def created_under(stack_endpoints, prefix: str) -> tuple[list[str], list[str]]:
    """Topics and subjects under the prefix: check itself must never add any."""
    admin = AdminClient({"bootstrap.servers": stack_endpoints.bootstrap_servers})
    topics = sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix))
    client = make_client(stack_endpoints.registry_url)
    try:
        subjects = sorted(s for s in client.get_subjects() if s.startswith(prefix))
    finally:
        client.close()
    return topics, subjects


def line(result: subprocess.CompletedProcess, start: str) -> str:
    """The one report line starting with ``start`` (fails listing the whole report otherwise)."""
    found = [ln for ln in result.stdout.splitlines() if ln.startswith(start)]
    assert len(found) == 1, f"no single line starting {start!r} in:\n{result.stdout}\n{result.stderr}"
    return found[0]


def test_good_configuration_exits_0_and_creates_nothing(stack_endpoints, sim, unique_prefix):
    result = run_check(stack_endpoints, sim, unique_prefix, "--streams", "!miniTicker@arr,@ticker",
                       "--quote-assets", "USDT")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "FAIL" not in result.stdout
    line(result, "ok    kafka: 1 broker(s)")
    line(result, f"ok    topic {unique_prefix}.symbols: missing; the worker creates it (6 partitions, "
                 "cleanup.policy=compact)")
    line(result, f"ok    schema {unique_prefix}.ticker-value: not registered yet")
    line(result, "ok    binance REST: exchangeInfo from")
    # The USDT pattern expands to the excerpt's TRADING USDT symbols, listed by name.
    assert "ok    streams: 5 stream(s) on 1 connection(s)" in result.stdout
    for stream in ("!miniTicker@arr", "btcusdt@ticker", "ethusdt@ticker", "1inchusdt@ticker", "shibusdt@ticker"):
        assert f"      {stream}\n" in result.stdout
    assert result.stdout.rstrip().endswith("check: the worker would start (0 warnings)")
    assert created_under(stack_endpoints, unique_prefix) == ([], [])


def test_existing_good_topics_and_schemas_pass(stack_endpoints, sim, unique_prefix, worker_factory):
    """After a real worker ran with the same settings, check agrees with what it created and registered."""
    worker = worker_factory("--ws-url", sim.ws_url, "--rest-url", sim.http_url, "--topic-prefix", unique_prefix,
                            "--topic-partitions", "2")
    worker.wait_ready()
    assert worker.stop() == 0
    result = run_check(stack_endpoints, sim, unique_prefix, "--topic-partitions", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    line(result, f"ok    topic {unique_prefix}.ticker: exists, 2 partitions, cleanup.policy=delete")
    line(result, f"ok    schema {unique_prefix}.miniticker-value: MiniTicker.avsc is compatible")
    again = run_check(stack_endpoints, sim, unique_prefix, "--topic-partitions", "3")
    assert again.returncode == 0  # a partition mismatch is a warning: the worker starts and does not alter it
    line(again, f"warn  topic {unique_prefix}.ticker: 2 partitions, configured 3")


def test_unreachable_kafka_fails_with_exit_1(stack_endpoints, sim, unique_prefix):
    dead = f"127.0.0.1:{free_port()}"
    result = run_check(stack_endpoints, sim, unique_prefix, bootstrap=dead)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAIL  kafka: {dead} unreachable within 5 s" in line(result, "FAIL  kafka:")
    assert len(result.stderr.splitlines()) < 5, "librdkafka's own log lines must not flood the report"
    line(result, "ok    registry:")  # the other checks still ran
    line(result, "ok    binance REST:")
    assert result.stdout.rstrip().endswith("check: 1 failed, 0 warnings: the worker would not start (or would wait) "
                                           "until the FAIL lines are fixed (exit 1)")
    assert created_under(stack_endpoints, unique_prefix) == ([], [])


def test_unreachable_registry_fails_with_exit_1(stack_endpoints, sim, unique_prefix):
    dead = f"http://127.0.0.1:{free_port()}{CCOMPAT}"
    result = run_check(stack_endpoints, sim, unique_prefix, registry=dead)
    assert result.returncode == 1, result.stdout + result.stderr
    assert line(result, "FAIL  registry:").startswith(f"FAIL  registry: {dead} unreachable:")
    assert "schema " not in result.stdout  # nothing to compare against
    line(result, f"ok    topic {unique_prefix}.ticker: missing; the worker creates it")


def test_registry_url_without_the_ccompat_path_is_a_config_error(stack_endpoints, sim, unique_prefix):
    if not stack_endpoints.registry_url.endswith(CCOMPAT):
        pytest.skip("the test registry is not an Apicurio /apis/ccompat/v7 URL")
    base = stack_endpoints.registry_url[:-len(CCOMPAT)]
    result = run_check(stack_endpoints, sim, unique_prefix, registry=base)
    assert result.returncode == 2, result.stdout + result.stderr
    assert line(result, "FAIL  registry:") == (
        f"FAIL  registry: {base} answers 404 to GET /subjects: not a Confluent-API URL "
        f"(for Apicurio Registry append {CCOMPAT})")
    assert "Traceback" not in result.stdout + result.stderr


def test_incompatible_registered_schema_fails_and_registers_nothing(stack_endpoints, sim, unique_prefix):
    # Under BACKWARD our Ticker (trade_count long) must read what this one (a string) wrote: it cannot.
    registered = copy.deepcopy(load_schema("ticker"))
    next(f for f in registered["fields"] if f["name"] == "trade_count")["type"] = "string"
    client = make_client(stack_endpoints.registry_url)
    subject = f"{unique_prefix}.ticker-value"
    try:
        register_schemas(client, {"ticker": f"{unique_prefix}.ticker"}, schemas={"ticker": registered})
        result = run_check(stack_endpoints, sim, unique_prefix)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Ticker.avsc is incompatible with the registered latest version" in line(
            result, f"FAIL  schema {subject}:")
        line(result, f"ok    schema {unique_prefix}.miniticker-value: not registered yet")
        assert client.get_versions(subject) == [1]
    finally:
        client.close()
    assert created_under(stack_endpoints, unique_prefix) == ([], [subject])


def test_unknown_symbol_fails_and_not_trading_symbol_warns(stack_endpoints, sim, unique_prefix):
    result = run_check(stack_endpoints, sim, unique_prefix, "--streams",
                       "btcusdt@ticker,nosuchcoin@ticker,bccbtc@miniTicker")
    assert result.returncode == 2, result.stdout + result.stderr  # as 'ingest run' refuses a symbol not listed
    assert "symbol NOSUCHCOIN is not in exchangeInfo" in line(result, "FAIL  stream nosuchcoin@ticker:")
    assert "symbol BCCBTC is BREAK, not TRADING" in line(result, "warn  stream bccbtc@miniTicker:")
    assert "btcusdt@ticker:" not in result.stdout
    listed = run_check(stack_endpoints, sim, unique_prefix, "--streams", "btcusdt@ticker,bccbtc@miniTicker")
    assert listed.returncode == 0, listed.stdout
    assert listed.stdout.rstrip().endswith("check: the worker would start (1 warning)")
    assert created_under(stack_endpoints, unique_prefix) == ([], [])


def test_symbols_topic_that_is_not_compacted_fails(stack_endpoints, sim, unique_prefix):
    admin = AdminClient({"bootstrap.servers": stack_endpoints.bootstrap_servers})
    name = f"{unique_prefix}.symbols"
    admin.create_topics([NewTopic(name, 6, config={"cleanup.policy": "delete"})])[name].result(timeout=30)
    result = run_check(stack_endpoints, sim, unique_prefix)
    assert result.returncode == 1, result.stdout + result.stderr
    assert line(result, f"FAIL  topic {name}:") == (
        f"FAIL  topic {name}: cleanup.policy=delete, the worker needs compact (delete or recreate the topic)")
    assert created_under(stack_endpoints, unique_prefix) == ([name], [])


@pytest.mark.parametrize(("flags", "expected"), [
    (("--streams", "btcusdt@trade"), "unsupported stream 'btcusdt@trade'"),
    (("--schema-registry-url", "not-a-url"), "'not-a-url'"),
    (("--max-connections", "0"), "--max-connections must be at least 1"),
])
def test_configuration_errors_exit_2_before_any_network_check(stack_endpoints, sim, unique_prefix, flags,
                                                              expected):
    result = run_check(stack_endpoints, sim, unique_prefix, *flags)
    assert result.returncode == 2, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("FAIL  settings: ") and expected in first, result.stdout
    assert "kafka:" not in result.stdout and "Traceback" not in result.stderr
    assert created_under(stack_endpoints, unique_prefix) == ([], [])


def test_metrics_port_in_use_is_a_config_error(stack_endpoints, sim, unique_prefix):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_check(stack_endpoints, sim, unique_prefix, "--metrics-host", "127.0.0.1",
                           "--metrics-port", str(port))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot bind 127.0.0.1:{port}" in line(result, "FAIL  metrics port:")


def test_patterns_that_need_too_many_connections_are_a_config_error(stack_endpoints, sim, unique_prefix):
    result = run_check(stack_endpoints, sim, unique_prefix, "--streams", "@ticker",
                       "--max-streams-per-connection", "2", "--max-connections", "2")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "streams need 4 connections of at most 2 streams" in line(result, "FAIL  streams:")


def test_topics_the_broker_would_refuse_fail_without_being_created(stack_endpoints, sim, unique_prefix):
    """A validate-only CreateTopics sees what the broker would refuse (here: more replicas than brokers)."""
    result = run_check(stack_endpoints, sim, unique_prefix, "--topic-replication-factor", "3")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "missing, and the broker would refuse to create it:" in line(
        result, f"FAIL  topic {unique_prefix}.ticker:")
    assert created_under(stack_endpoints, unique_prefix) == ([], [])
