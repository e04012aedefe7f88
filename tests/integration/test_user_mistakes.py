"""A user's mistakes on the command line: one line that says what is wrong, exit code 2, no traceback, and no
side effect on the real local stack (no topic created, no schema registered).

Every case runs the installed CLI as a user would (a subprocess), against the session's real Kafka + registry
and a real simulator, with a topic prefix of its own; after the whole table, no topic and no subject carries
any of those prefixes.
"""

# ruff: noqa: E501 - one mistake per line reads best as a table
from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from confluent_kafka.admin import AdminClient

from ingest import config
from ingest.avro import make_client
from ingest.cli import build_parser
from ingest.sim.settings import DEFAULT_EXCHANGE_INFO
from tests.sim_fixture import SimProcess, start_sim

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]


@dataclass
class Case:
    name: str
    argv: list[str]  # after `ingest`; {ws}, {http}, {registry_root}, {busy_port}, {dead_url}, {prefix} are filled in
    expect: str  # a regex the one error line must match (what is wrong, and a hint of what to do)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"tbad{RUN}{self.name.replace('-', '')}.spot"


RUN_OK = ["--ws-url", "{ws}", "--rest-url", "{http}", "--metrics-port", "0", "--topic-prefix", "{prefix}"]

CASES = [
    Case("unknown-flag", ["run", "--bogus"], r"^ingest run: unrecognized arguments: --bogus \(see 'ingest run --help'\)$"),
    Case("unknown-command", ["rn"], r"^ingest: .*invalid choice: 'rn'"),
    Case("stream-kind", ["run", *RUN_OK, "--streams", "btcusdt@trade"], r"--streams: unsupported stream 'btcusdt@trade'"),
    Case("stream-junk", ["run", *RUN_OK, "--streams", "a;b"], r"--streams: unsupported stream 'a;b'"),
    Case("unknown-symbol", ["run", *RUN_OK, "--streams", "btcusdt@ticker,nosuchcoin@ticker"],
         r"nosuchcoin@ticker: symbol NOSUCHCOIN is not in exchangeInfo .*check the spelling"),
    Case("registry-not-url", ["run", *RUN_OK, "--schema-registry-url", "not-a-url"],
         r"--schema-registry-url: 'not-a-url' is not a http/https URL"),
    Case("registry-no-ccompat", ["run", *RUN_OK, "--schema-registry-url", "{registry_root}"],
         r"GET /subjects answered 404.*/apis/ccompat/v7"),
    Case("metrics-port-busy", ["run", "--ws-url", "{ws}", "--rest-url", "{http}", "--topic-prefix", "{prefix}",
                               "--metrics-port", "{busy_port}"], r"--metrics-port \d+ .*in use.*--metrics-port"),
    Case("metrics-port-range", ["run", *RUN_OK[:4], "--metrics-port", "70000"], r"--metrics-port must be a port"),
    Case("binance-down-run", ["run", "--ws-url", "{ws}", "--rest-url", "{dead_url}", "--metrics-port", "0",
                              "--topic-prefix", "{prefix}"], r"Binance REST http://127\.0\.0\.1:\d+ unreachable"),
    Case("binance-down-seed", ["topics", "seed", "--rest-url", "{dead_url}", "--topic-prefix", "{prefix}"],
         r"Binance REST http://127\.0\.0\.1:\d+ unreachable.*nothing was created"),
    Case("binance-down-demo", ["demo", "--live"], r"--live: Binance REST http://127\.0\.0\.1:\d+ unreachable",
         env={"INGEST_REST_URL": "{dead_url}"}),
    Case("bootstrap-no-port", ["run", *RUN_OK, "--bootstrap-servers", "localhost"], r"--bootstrap-servers: 'localhost' is not host:port"),
    Case("topic-prefix", ["run", "--ws-url", "{ws}", "--rest-url", "{http}", "--topic-prefix", "bad prefix!"],
         r"--topic-prefix: 'bad prefix!' is not a legal Kafka topic name"),
    Case("choice", ["run", *RUN_OK, "--buffer-policy", "sometimes"], r"ingest run: argument --buffer-policy: invalid choice"),
    Case("unknown-env", ["run", *RUN_OK], r"unknown environment variable INGEST_STREMS", env={"INGEST_STREMS": "x"}),
    Case("ws-scheme", ["run", *RUN_OK, "--ws-url", "http://127.0.0.1:1"], r"--ws-url: 'http://127\.0\.0\.1:1' is not a wss/ws URL"),
    Case("quote-no-pattern", ["run", *RUN_OK, "--quote-assets", "USDT"], r"--quote-assets only narrows"),
    Case("bool", ["run", *RUN_OK, "--combined", "maybe"], r"--combined: invalid value 'maybe'"),
    Case("owned-kafka-key", ["run", *RUN_OK], r"Kafka property acks is set by the worker", env={"INGEST_KAFKA_ACKS": "1"}),
    Case("unknown-kafka-key", ["run", *RUN_OK], r"Kafka property sasl\.mechanizm is not a librdkafka property", env={"INGEST_KAFKA_SASL_MECHANIZM": "PLAIN"}),
    Case("bad-kafka-value", ["run", *RUN_OK], r"Kafka property linger\.ms: Invalid value", env={"INGEST_KAFKA_LINGER_MS": "soon"}),
    Case("kafka-key-of-an-option", ["run", *RUN_OK], r"queue\.buffering\.max\.messages is set by the worker from --buffer-max-messages", env={"INGEST_KAFKA_QUEUE_BUFFERING_MAX_MESSAGES": "5"}),
    Case("config-file-missing", ["run", *RUN_OK, "--config", "/nonexistent/ingest.yaml"], r"config file /nonexistent/ingest\.yaml: No such file"),
    Case("properties-file", ["run", *RUN_OK, "--kafka-properties-file", "/nonexistent/kafka.properties"],
         r"kafka properties file /nonexistent/kafka.properties: No such file"),
    Case("negative-timeout", ["run", *RUN_OK, "--stale-timeout-s", "-1"], r"--stale-timeout-s must be >= 0"),
    Case("replication", ["topics", "seed", "--rest-url", "{http}", "--topic-prefix", "{prefix}",
                         "--topic-replication-factor", "99"], r"refused the topics .*[Rr]eplication"),
    Case("schemas-no-ccompat", ["schemas", "check", "--schema-registry-url", "{registry_root}"],
         r"^ingest schemas: .*GET /subjects answered 404.*/apis/ccompat/v7"),
    Case("kafka-down-seed", ["topics", "seed", "--rest-url", "{http}", "--topic-prefix", "{prefix}",
                             "--bootstrap-servers", "{dead_hostport}"], r"Kafka 127\.0\.0\.1:\d+ unreachable.*--bootstrap-servers"),
    Case("schemas-not-url", ["schemas", "register", "--schema-registry-url", "not-a-url"], r"is not a http/https URL"),
    Case("demo-duration", ["demo", "--duration", "-1"], r"--duration must be >= 0"),
    Case("demo-streams", ["demo", "--streams", "btcusdt@trade"], r"--streams: unsupported stream"),
    Case("sim-port", ["sim", "--port", "99999"], r"--port must be a port number"),
    Case("sim-port-busy", ["sim", "--port", "{busy_port}"], r"cannot listen on 127\.0\.0\.1:\d+: .*--port"),
    Case("sim-file", ["sim", "--exchange-info", "/nonexistent.json"], r"--exchange-info: no such file"),
    Case("stack-port", ["stack", "up", "--kafka-port", "99999"], r"--kafka-port must be a port number"),
]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    proc = start_sim(tmp_path_factory.mktemp("sim"), exchange_info=DEFAULT_EXCHANGE_INFO, symbols=5, interval=1.0,
                     sent_log=False)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    """A port something else listens on, on every address (the worker binds 0.0.0.0, the simulator 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _dead_url() -> str:
    with socket.socket() as sock:  # a free port nothing listens on: connections are refused
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _state(stack_endpoints) -> tuple[set[str], set[str]]:
    topics = set(AdminClient({"bootstrap.servers": stack_endpoints.bootstrap_servers}).list_topics(timeout=15).topics)
    client = make_client(stack_endpoints.registry_url)
    try:
        subjects = set(client.get_subjects())
    finally:
        client.close()
    return topics, subjects


def _run(case: Case, fill: dict[str, str], stack_endpoints, home: str) -> subprocess.CompletedProcess:
    fill = {**fill, "prefix": case.prefix}
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=stack_endpoints.bootstrap_servers, SCHEMA_REGISTRY_URL=stack_endpoints.registry_url,
               XDG_STATE_HOME=home)  # demo/stack cases must not touch a developer's stacks
    env.update({k: v.format(**fill) for k, v in case.env.items()})
    argv = [arg.format(**fill) for arg in case.argv]
    return subprocess.run([sys.executable, "-m", "ingest.cli", *argv], capture_output=True, text=True, timeout=120,
                          env=env, stdin=subprocess.DEVNULL)


def test_the_table_has_at_least_15_distinct_mistakes():
    assert len({c.name for c in CASES}) == len(CASES) >= 15


def test_user_mistakes_are_one_line_exit_2_without_side_effects(sim, busy_port, stack_endpoints, tmp_path):
    before_topics, before_subjects = _state(stack_endpoints)
    dead_url = _dead_url()
    fill = {"ws": sim.ws_url, "http": sim.http_url, "busy_port": str(busy_port), "dead_url": dead_url,
            "dead_hostport": dead_url.removeprefix("http://"),
            "registry_root": stack_endpoints.registry_url.removesuffix("/apis/ccompat/v7")}
    if fill["registry_root"] == stack_endpoints.registry_url:
        pytest.skip("the registry under test is not Apicurio's ccompat path; the 404 case does not apply")
    with ThreadPoolExecutor(max_workers=4) as pool:  # three cases wait out REST retries (~10 s each)
        results = list(pool.map(lambda c: (c, _run(c, fill, stack_endpoints, str(tmp_path))), CASES))

    failures = []
    for case, result in results:
        output = result.stdout + result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("ingest")]
        if result.returncode != 2 or "Traceback" in output or len(errors) != 1 \
                or not re.search(case.expect, errors[0]):
            failures.append(f"{case.name}: exit {result.returncode}, error lines {errors!r}\n{output[-1500:]}")
    assert not failures, "\n\n".join(failures)

    after_topics, after_subjects = _state(stack_endpoints)
    marker = f"tbad{RUN}"
    assert not {t for t in after_topics - before_topics if marker in t}, "a mistake created topics"
    assert not {s for s in after_subjects - before_subjects if marker in s}, "a mistake registered schemas"


def test_accepted_spellings_are_not_mistakes():
    """Case-insensitive choices and the local stack's variables are accepted by the worker's settings."""
    settings = config.load(argparse.Namespace(log_level="debug", buffer_policy="DROP_NEWEST"),
                           environ={"INGEST_STACK_DIR": "/tmp/stack", "INGEST_LOG_FORMAT": "JSON"})
    assert (settings.log_level, settings.buffer_policy, settings.log_format) == ("DEBUG", "drop_newest", "json")
    parser, _ = build_parser()
    args = parser.parse_args(["run", "--log-level", "debug", "--buffer-policy", "Drop_Oldest"])
    assert (args.log_level, args.buffer_policy) == ("DEBUG", "drop_oldest")
