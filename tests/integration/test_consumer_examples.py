"""The consumer examples (examples/) and `ingest tail` read what a real worker produced from the simulator.

Ground truth is the topic itself, read whole and decoded by the test helpers (fastavro with the writer schema
from the registry); each consumer's output must consist of exactly those records: real symbols, exact decimal
strings, the same event times.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from ingest.devstack.jars import cache_dir
from tests.kafka_reading import RegistryDecoder, read_all
from tests.sim_fixture import EXCHANGE_INFO_EXCERPT, REPO_ROOT, start_sim
from tests.worker_fixture import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = REPO_ROOT / "examples"
JAVA_PROJECT = EXAMPLES / "java"
CCOMPAT = "/apis/ccompat/v7"


def _env(stack_endpoints) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=stack_endpoints.bootstrap_servers,
               SCHEMA_REGISTRY_URL=stack_endpoints.registry_url)
    return env


@pytest.fixture(scope="module")
def produced(stack_endpoints, tmp_path_factory):
    """(topic, {(partition, offset): (symbol, close, open, event_time_ms)}, TRADING symbols): a real worker's
    miniticker records from a few seconds of the simulator, read back whole."""
    workdir = tmp_path_factory.mktemp("examples")
    prefix = f"t{uuid.uuid4().hex[:10]}.spot"
    sim = start_sim(workdir / "sim", exchange_info=EXCHANGE_INFO_EXCERPT, interval=0.5, seed=11, sent_log=False)
    try:
        worker = WorkerProcess(["--ws-url", sim.ws_url, "--rest-url", sim.http_url, "--topic-prefix", prefix,
                                "--snapshot-on-connect", "false", "--topic-partitions", "3"],
                               _env(stack_endpoints), workdir / "worker.log")
        worker.wait_ready()
        time.sleep(5)
        assert worker.stop() == 0
    finally:
        sim.stop()
    topic = f"{prefix}.miniticker"
    decoder = RegistryDecoder(stack_endpoints.registry_url)
    truth = {}
    for rec in read_all(stack_endpoints.bootstrap_servers, topic):
        value = decoder.decode(rec.raw)[1]
        truth[(rec.partition, rec.offset)] = (value["symbol"], value["close_price"], value["open_price"],
                                              round(value["event_time"].timestamp() * 1000))
    info = orjson.loads(EXCHANGE_INFO_EXCERPT.read_bytes())
    trading = {s["symbol"] for s in info["symbols"] if s["status"] == "TRADING"}
    assert len(truth) >= 30, "the worker should have produced a fair number of records"
    symbols = {t[0] for t in truth.values()}
    assert symbols <= trading and len(symbols) >= 3, symbols
    return topic, truth, trading


def test_ingest_tail_prints_exactly_what_the_worker_produced(stack_endpoints, produced):
    topic, truth, _ = produced
    result = subprocess.run([sys.executable, "-m", "ingest.cli", "tail", topic, "--from-beginning", "--exit-at-end",
                             "--format", "json"], capture_output=True, text=True, timeout=60,
                            env=_env(stack_endpoints))
    assert result.returncode == 0, result.stderr
    printed = {}
    for line in result.stdout.splitlines():
        rec = orjson.loads(line)
        value = rec["value"]
        printed[(rec["partition"], rec["offset"])] = (
            value["symbol"], value["close_price"], value["open_price"],
            round(datetime.fromisoformat(value["event_time"]).timestamp() * 1000))
    assert printed == truth


def test_python_example_decodes_with_confluent_avro_deserializer(stack_endpoints, produced):
    topic, truth, trading = produced
    result = subprocess.run([sys.executable, str(EXAMPLES / "python" / "consume.py"), "--topic", topic, "--max", "25",
                             "--group", f"example-{uuid.uuid4().hex[:8]}"], capture_output=True, text=True,
                            timeout=60, env=_env(stack_endpoints))
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(lines) == 25
    by_key = {(s, c, t): o for s, c, o, t in truth.values()}
    for symbol, close, change, when in lines:
        assert symbol in trading
        event_ms = round(datetime.fromisoformat(when).timestamp() * 1000)
        opened = by_key[(symbol, close, event_ms)]  # KeyError: a record the worker never wrote
        assert Decimal(change) == Decimal(close) - Decimal(opened)


def _java_build_is_fresh() -> bool:
    """The classes and the copied dependencies are newer than every source: no Maven run needed (CI speed)."""
    built = JAVA_PROJECT / "target" / "classes" / "example" / "TickerStreams.class"
    lib = JAVA_PROJECT / "target" / "lib"
    if not built.exists() or not lib.is_dir() or not any(lib.glob("apicurio-registry-avro-serde-kafka-*.jar")):
        return False
    sources = [JAVA_PROJECT / "pom.xml", *(JAVA_PROJECT / "src").rglob("*.java")]
    return built.stat().st_mtime >= max(p.stat().st_mtime for p in sources)


def build_java_example() -> None:
    """mvn package with the project's Maven cache (offline first; the first build downloads from Maven Central)."""
    if _java_build_is_fresh():
        return
    mvn = shutil.which("mvn")
    assert mvn is not None, "Maven is needed for the Java example (.ci/setup installs it)"
    repo = cache_dir() / "m2"
    cmd = [mvn, "-B", "-q", f"-Dmaven.repo.local={repo}", "package"]
    offline = subprocess.run([*cmd[:2], "-o", *cmd[2:]], cwd=JAVA_PROJECT, capture_output=True, text=True,
                             timeout=600)
    if offline.returncode != 0:
        online = subprocess.run(cmd, cwd=JAVA_PROJECT, capture_output=True, text=True, timeout=1200)
        assert online.returncode == 0, online.stdout[-3000:] + online.stderr[-3000:]


def test_java_kafka_streams_example_decodes_with_apicurio_serde(stack_endpoints, produced, tmp_path: Path):
    if not stack_endpoints.registry_url.endswith(CCOMPAT):
        pytest.skip("the Java example reads through Apicurio's own API; the test registry is not Apicurio")
    topic, truth, trading = produced
    build_java_example()
    registry_v3 = stack_endpoints.registry_url[:-len(CCOMPAT)] + "/apis/registry/v3"
    wanted = 25
    result = subprocess.run(
        ["java", f"-Djava.io.tmpdir={tmp_path}", "-cp", "target/classes:target/lib/*", "example.TickerStreams",
         stack_endpoints.bootstrap_servers, registry_v3, topic, f"example-{uuid.uuid4().hex[:8]}", str(wanted),
         "120"], cwd=JAVA_PROJECT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    tickers = [line.split("\t")[1:] for line in result.stdout.splitlines() if line.startswith("ticker\t")]
    counts = [line.split("\t")[1:] for line in result.stdout.splitlines() if line.startswith("count\t")]
    assert len(tickers) >= wanted
    expected = {(s, c, str(t)) for s, c, _, t in truth.values()}
    assert {tuple(t) for t in tickers} <= expected  # real symbols, exact decimals, the same event times
    assert {t[0] for t in tickers} <= trading
    # The running count per symbol ends at the number of that symbol's records it printed.
    last_count = {symbol: int(n) for symbol, n in counts}
    assert last_count == dict(Counter(t[0] for t in tickers))
