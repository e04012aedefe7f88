"""The worker image, built by scripts/build-image and run exactly as the chart configures it (issue 16).

The chart is rendered with `helm template`; the Deployment's and the seeding Job's container specs (command,
args, env, ports, probes, securityContext, mounts) are run with podman by tests/container/pod.py: uid 10001,
read-only root filesystem with only the chart's volumes writable, every capability dropped, host network to
the test stack (tests/kafka_fixture.py) and the simulator (tests/sim_fixture.py). Values are overridden only
where a cluster's differ from this machine's: the Kafka/registry/Binance addresses, a free metrics port, a
topic prefix of its own, and a 5 s linger so records really wait in the producer when SIGTERM arrives.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.devstack.stack import LocalStack, free_port
from tests.container.pod import PodRun, Secret, podman, run
from tests.faults import accounting
from tests.helm.tooling import CHART, KUBE_VERSIONS, by_kind, helm, one, template_args
from tests.kafka_reading import partitions_of, read_all
from tests.secure import BasicAuthProxy, make_pki, prepare_secure_kafka

pytestmark = [pytest.mark.container, pytest.mark.integration]

STREAM = "!miniTicker@arr"  # served by the simulator by default (the whole-market ticker array is not)


def render(*sets: str, values: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """`helm template` of the chart with --set-json overrides (release rel, namespace market)."""
    args = template_args(values, sets, KUBE_VERSIONS[-1])
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def local_values(stack, sim, prefix: str, port: int, *extra: str) -> tuple[str, ...]:
    return (f'kafka.bootstrapServers="{stack.bootstrap_servers}"', f'schemaRegistry.url="{stack.registry_url}"',
            f'config.wsUrl="{sim.ws_url}"', f'config.restUrl="{sim.http_url}"', f'config.streams=["{STREAM}"]',
            f'config.topicPrefix="{prefix}"', f"config.metricsPort={port}", *extra)


def log_lines(pod: PodRun) -> list[dict[str, Any]]:
    out = []
    for line in pod.logs().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def event(lines: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [e for e in lines if e.get("event") == name]
    assert found, f"no log line {name!r} in {[e.get('event') for e in lines][-20:]}"
    return found[-1]


def runbook_get() -> str:
    """The GET= Python one-liner of docs/runbook.md's first steps (the image has no wget/curl)."""
    text = (CHART.parents[1] / "docs" / "runbook.md").read_text()
    match = re.search(r"^GET='(.+)'$", text, re.MULTILINE)
    assert match, "docs/runbook.md has no GET='...' line"
    return match.group(1)


def test_image_holds_the_venv_and_nothing_of_the_source_tree(image: str) -> None:
    """Catches: an editable install (sources needed at run time), tests/bench/caches or build tools in the
    final image, a root user, a HEALTHCHECK lost by an OCI-format build."""
    script = r"""
import importlib.metadata as md, importlib.util, json, os, shutil, sys
import ingest, ingest.avro as avro
dist = md.distribution("binance-ingest")
direct = dist.read_text("direct_url.json")
found = []
for top in ("/", ):
    for root, dirs, files in os.walk(top):
        if root.startswith(("/proc", "/sys", "/dev")):
            dirs[:] = []
            continue
        for name in dirs + files:
            path = os.path.join(root, name)
            if name in ("kafka_fixture.py", "sim_fixture.py", "pyproject.toml", ".venv", "bench", "pip-cache",
                        "__editable__") or path.startswith(("/src", "/app", "/root/.cache", "/tmp/")):
                found.append(path)
found += [tool for tool in ("gcc", "cc", "c++", "make", "ld") if shutil.which(tool)]
found += [module for module in ("pip", "setuptools") if importlib.util.find_spec(module)]
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "ingest": ingest.__file__, "direct_url": direct,
                  "schemas": sorted(p.name for p in avro.SCHEMA_DIR.glob("*.avsc")), "found": found,
                  "python": sys.version.split()[0], "wget": shutil.which("wget"), "curl": shutil.which("curl")}))
"""
    out = podman("run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                 "--read-only", "--entrypoint", "python", image, "-c", script).stdout
    facts = json.loads(out)
    assert (facts["uid"], facts["gid"]) == (10001, 10001)
    assert facts["ingest"].startswith("/opt/venv/lib/") and "site-packages" in facts["ingest"]
    assert facts["direct_url"] is None or '"editable": true' not in facts["direct_url"], facts["direct_url"]
    assert {"MiniTicker.avsc", "Ticker.avsc"} <= set(facts["schemas"]), facts["schemas"]
    assert facts["found"] == [], f"source tree, caches or build tools in the image: {facts['found'][:20]}"
    assert tuple(int(x) for x in facts["python"].split(".")[:2]) >= (3, 11)
    inspect = json.loads(podman("image", "inspect", image).stdout)[0]
    health = inspect.get("Healthcheck") or inspect["Config"].get("Healthcheck")
    assert health and "/healthz" in " ".join(health["Test"]), f"no HEALTHCHECK in the image config: {health}"
    size_mb = inspect["Size"] / 1e6
    layers = podman("history", "--format", "{{.Size}}\t{{.CreatedBy}}", image).stdout
    print(f"\n[image] {image}: {size_mb:.0f} MB, python {facts['python']}, wget {facts['wget']}, "
          f"curl {facts['curl']}\n{layers}")


def test_worker_runs_as_the_chart_runs_it(image: str, stack_endpoints, sim_factory, unique_prefix: str,
                                         container_dir: Path) -> None:
    """Catches: a container that cannot start as uid 10001 on a read-only root, env the chart sets that the
    worker does not understand, probes on wrong paths/ports, a HEALTHCHECK that cannot pass, runbook commands
    needing tools the image lacks, a SIGTERM that does not flush or exits non-zero or outlives the grace period."""
    sim = sim_factory(symbols=5, interval=0.2, seed=16)
    port = free_port()
    docs = render(*local_values(stack_endpoints, sim, unique_prefix, port, 'kafka.properties={"linger.ms":"5000"}'))
    deployment = one(docs, "Deployment")
    pod_spec = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod_spec["containers"] if c["name"] == "worker")
    assert container["image"] == image
    grace = pod_spec["terminationGracePeriodSeconds"]
    pod = run(f"bi-worker-{unique_prefix[:11]}", container, pod_spec, docs, {}, container_dir, image_healthcheck=True)
    assert isinstance(pod, PodRun)
    try:
        startup_s = pod.wait_probe("startupProbe", 60)
        ready_s = pod.wait_probe("readinessProbe", 90)
        assert pod.get(pod.probe_url("livenessProbe"))[0] == 200
        print(f"\n[container] start to /healthz 200: {startup_s:.1f}s, start to /readyz 200: {ready_s:.1f}s")

        # As the chart's securityContext says: uid/gid 10001 (+ fsGroup), read-only root, /tmp writable.
        ids = podman("exec", pod.name, "python", "-c", "import os; print(os.getuid(), os.getgid(), os.getgroups())")
        assert ids.stdout.split()[:2] == ["10001", "10001"], ids.stdout
        root_write = podman("exec", pod.name, "python", "-c", "open('/opt/venv/x', 'w')", check=False)
        assert root_write.returncode != 0 and "Read-only file system" in root_write.stderr, root_write.stderr
        podman("exec", pod.name, "python", "-c", "open('/tmp/x', 'w').write('ok')")

        # The Dockerfile's HEALTHCHECK, run by podman inside the container; and the same check failing when
        # pointed at a port nothing listens on (so the passing check is not vacuous).
        health = podman("healthcheck", "run", pod.name, check=False)
        assert health.returncode == 0, f"HEALTHCHECK failed: {health.stdout} {health.stderr}"
        inspect = json.loads(podman("image", "inspect", image).stdout)[0]
        check_cmd = (inspect.get("Healthcheck") or inspect["Config"]["Healthcheck"])["Test"][1:]
        bad = podman("exec", "--env", f"INGEST_METRICS_PORT={free_port()}", pod.name, *check_cmd, check=False)
        assert bad.returncode != 0

        # The runbook's first-step commands, inside the image (port: the chart's metrics port).
        get = runbook_get().replace("9108", str(port))
        readyz = podman("exec", pod.name, "python", "-c", get, "/readyz").stdout
        assert readyz.startswith("200 ") and json.loads(readyz[4:])["ready"] is True, readyz
        metrics = podman("exec", pod.name, "python", "-c", get, "/metrics").stdout
        assert "binance_ingest_records_produced_total" in metrics

        time.sleep(3.0)  # records accumulate in the producer (linger 5 s)
        before = accounting.Scrape(accounting.parse_metrics(pod.get(f"http://127.0.0.1:{port}/metrics")[1]))
        accepted_before = before.get("records_accepted_total", source="websocket")
        code, took = pod.stop(grace)
        lines = log_lines(pod)
    finally:
        pod.remove()
    assert code == 0, f"exit code {code} after SIGTERM"
    assert took < grace, f"stopped after {took:.1f}s, grace period {grace}s"
    started = event(lines, "worker starting")["settings"]
    assert started["topic_prefix"] == unique_prefix and started["streams"] == [STREAM]
    assert started["kafka_properties"].get("linger.ms") == "5000", started["kafka_properties"]
    flushing, stopped = event(lines, "flushing producer"), event(lines, "worker stopped")
    assert flushing["in_flight"] > 0, "nothing waited in the producer at SIGTERM: the flush was not exercised"
    assert stopped["failed"] == 0

    # Records a consumer decodes (via the registry), nothing lost: every acknowledged record is in Kafka, the
    # websocket records are exactly a prefix of what the simulator sent (no hole), no duplicates.
    topic = f"{unique_prefix}.miniticker"
    records = accounting.read_tickers(stack_endpoints.bootstrap_servers, stack_endpoints.registry_url, topic)
    keys = [(r.symbol, r.event_time) for r in records]
    assert len(keys) == len(set(keys)), "duplicates in Kafka"
    stream_keys = {(r.symbol, r.event_time) for r in records if r.source == "websocket"}
    assert len(stream_keys) >= accepted_before > 0
    sent = [(line["symbol"], line["E"]) for line in accounting.sent_tickers(sim, "miniticker")]
    assert stream_keys == set(sent[: len(stream_keys)]), "Kafka is not a prefix of what was sent: a hole"
    others = sum(len(read_all(stack_endpoints.bootstrap_servers, f"{unique_prefix}.{kind}"))
                 for kind in ("symbols",))
    assert stopped["acked"] == len(records) + others, (stopped, len(records), others)
    print(f"[container] SIGTERM: exit {code} after {took:.1f}s (grace {grace}s), in flight at flush "
          f"{flushing['in_flight']}, acked {stopped['acked']} = in Kafka {len(records)} + symbols {others}, "
          f"failed 0; sent {len(sent)}, websocket records in Kafka {len(stream_keys)}")


def test_seed_job_runs_to_completion(image: str, stack_endpoints, sim_factory, unique_prefix: str,
                                     container_dir: Path) -> None:
    """Catches: a seeding Job whose command, env or mounts do not work in the image (the hook would block every
    install/upgrade): `ingest topics seed` then `ingest schemas check`, in the Job's order, each exit 0."""
    sim = sim_factory(symbols=5, interval=0.5, seed=17)
    docs = render(*local_values(stack_endpoints, sim, unique_prefix, free_port(), "topicSeeding.enabled=true",
                                "config.topicPartitions=3"))
    job = one(docs, "Job")
    pod_spec = job["spec"]["template"]["spec"]
    steps = [*pod_spec.get("initContainers", []), *pod_spec["containers"]]
    assert [c["args"] for c in steps] == [["topics", "seed"], ["schemas", "check"]]
    for step in steps:
        done = run(f"bi-seed-{step['name']}-{unique_prefix[:11]}", step, pod_spec, docs, {}, container_dir,
                   detach=False)
        assert not isinstance(done, PodRun)
        assert done.returncode == 0, f"{step['name']} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        print(f"\n[seed job] {step['name']}: exit 0; {(done.stdout + done.stderr).strip().splitlines()[-1:]}")
    for kind in ("miniticker", "ticker"):
        assert partitions_of(stack_endpoints.bootstrap_servers, f"{unique_prefix}.{kind}") == 3


def test_sasl_values_configure_the_worker_as_intended(image: str, container_dir: Path) -> None:
    """Catches: env of ci/sasl-ssl-values.yaml (SASL_SSL, SCRAM, mounted CA and client certificate, registry
    basic auth from Secrets, extra librdkafka properties) that the worker in the image reads differently than
    the chart intends. The worker logs its resolved settings (secrets masked) before it connects; addresses
    are pointed at closed loopback ports so nothing leaves the machine."""
    pki = make_pki(container_dir.parent / "pki")  # real PEM files: librdkafka loads them when it starts
    secrets = {"kafka-credentials": Secret({"user": "scram-user", "pass": "scram-secret-pass"}),
               "kafka-tls": Secret({"ca.crt": pki.ca_pem.read_text(), "tls.crt": pki.client_cert.read_text(),
                                    "tls.key": pki.client_key.read_text()}),
               "registry-credentials": Secret({"user-info": "reg-user:reg-secret-pass"})}
    port = free_port()
    docs = render(f'kafka.bootstrapServers="127.0.0.1:{free_port()}"',
                  f'schemaRegistry.url="https://127.0.0.1:{free_port()}"', f"config.metricsPort={port}",
                  values=(CHART / "ci" / "sasl-ssl-values.yaml",))
    pod_spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    pod = run("bi-sasl-config", container, pod_spec, docs, secrets, container_dir)
    assert isinstance(pod, PodRun)
    args = container["args"]
    assert args[:2] == ["run", "--config"], args
    dump = ("import argparse, json; from ingest import config; from ingest.kafka.producer import producer_config; "
            f"s = config.load(argparse.Namespace(config={args[2]!r})); "
            "print(json.dumps({'producer': producer_config(s), 'settings': vars(s)}))")
    try:
        pod.wait_probe("livenessProbe", 60)
        tls_files = podman("exec", pod.name, "python", "-c", "import pathlib; d = pathlib.Path("
                           "'/etc/binance-ingest/kafka-tls'); print(sorted((p.name, p.read_text()) for p in "
                           "d.iterdir()))").stdout
        # The worker's own config loader and producer config, inside the container with the pod's env.
        resolved = json.loads(podman("exec", pod.name, "python", "-c", dump).stdout)
        code, _ = pod.stop(pod_spec["terminationGracePeriodSeconds"])
        lines = log_lines(pod)
        text = pod.logs()
    finally:
        pod.remove()
    assert code == 0
    assert "ca.crt" in tls_files and "PRIVATE KEY" in tls_files, "the Secret's files are not readable by uid 10001"
    logged = event(lines, "worker starting")["settings"]
    assert logged["streams"] == ["@ticker"] and logged["quote_assets"] == ["USDT", "BTC"]
    assert logged["shutdown_grace_s"] == 25.5
    settings, props = resolved["settings"], resolved["producer"]
    assert settings["schema_registry_user_info"] == "reg-user:reg-secret-pass"
    assert settings["schema_registry_url"].startswith("https://127.0.0.1:")
    assert props["security.protocol"] == "SASL_SSL" and props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["sasl.username"] == "scram-user" and props["sasl.password"] == "scram-secret-pass"
    assert props["ssl.ca.location"] == "/etc/binance-ingest/kafka-tls/ca.crt"
    assert props["ssl.certificate.location"] == "/etc/binance-ingest/kafka-tls/tls.crt"
    assert props["ssl.key.location"] == "/etc/binance-ingest/kafka-tls/tls.key"
    assert props["linger.ms"] == "20" and props["compression.type"] == "zstd"
    for secret in ("scram-secret-pass", "reg-secret-pass"):
        assert secret not in text, "a secret appears in the worker log"
    props = {k: ("***" if "pass" in k else v) for k, v in props.items()}
    print(f"\n[container/sasl] resolved kafka properties: {shlex.quote(json.dumps(props, sort_keys=True))}")


def test_rendered_manifests_name_the_built_image() -> None:
    """Every workload of every CI values set runs the image scripts/build-image tags by default."""
    from tests.container.conftest import chart_image

    for values in sorted(CHART.glob("ci/*-values.yaml")):
        docs = render(values=(values,))
        for kind in ("Deployment", "Job"):
            for doc in by_kind(docs, kind):
                spec = doc["spec"]["template"]["spec"]
                for c in [*spec.get("initContainers", []), *spec["containers"]]:
                    assert c["image"] == chart_image(), (values.name, c["name"], c["image"])


def test_sasl_ssl_values_against_a_secure_broker(image: str, sim_factory, unique_prefix: str, tmp_path: Path,
                                                 container_dir: Path) -> None:
    """ci/sasl-ssl-values.yaml for real: a broker that only lets the worker in through SASL_SSL with SCRAM-SHA-512
    (certificate of a private CA, which the chart mounts from the kafka-tls Secret with the client certificate)
    and a registry behind HTTP basic auth (credentials from the registry Secret). The seeding Job's steps and
    the worker must work with nothing but the chart's env and mounts. The registry is plain HTTP here: the
    chart has no registry CA setting, so an HTTPS registry needs a publicly trusted certificate.
    Catches: SASL/TLS env or Secret mounts the worker or librdkafka in the image cannot use."""
    user, password = "ingest-worker", "scram-" + secrets.token_hex(8)
    registry_user, registry_password = "ingest", "registry-" + secrets.token_hex(8)
    directory = tmp_path / "secure-stack"
    listeners = prepare_secure_kafka(directory, {user: password})
    stack = LocalStack(directory)
    proxy = None
    try:
        stack.up()
        proxy = BasicAuthProxy(directory / "proxy", stack.state.registry_port, {registry_user: registry_password})
        proxy.start()
        pki = listeners.pki
        secret_data = {"kafka-credentials": Secret({"user": user, "pass": password}),
                       "kafka-tls": Secret({"ca.crt": pki.ca_pem.read_text(), "tls.crt": pki.client_cert.read_text(),
                                            "tls.key": pki.client_key.read_text()}),
                       "registry-credentials": Secret({"user-info": f"{registry_user}:{registry_password}"})}
        sim = sim_factory(symbols=20, interval=0.5, seed=18)
        port = free_port()
        docs = render(f'kafka.bootstrapServers="{listeners.sasl_ssl}"', f'schemaRegistry.url="{proxy.url}"',
                      f'config.wsUrl="{sim.ws_url}"', f'config.restUrl="{sim.http_url}"',
                      f'config.topicPrefix="{unique_prefix}"', f"config.metricsPort={port}",
                      values=(CHART / "ci" / "sasl-ssl-values.yaml",))
        job_spec = one(docs, "Job")["spec"]["template"]["spec"]
        for step in [*job_spec.get("initContainers", []), *job_spec["containers"]]:
            done = run(f"bi-sasl-seed-{step['name']}", step, job_spec, docs, secret_data, container_dir,
                       detach=False)
            assert not isinstance(done, PodRun)
            assert done.returncode == 0, f"{step['name']} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        seeded_symbols = len(read_all(stack.bootstrap_servers, f"{unique_prefix}.symbols"))  # the Job writes them too
        pod_spec = one(docs, "Deployment")["spec"]["template"]["spec"]
        pod = run("bi-sasl-worker", pod_spec["containers"][0], pod_spec, docs, secret_data, container_dir)
        assert isinstance(pod, PodRun)
        try:
            ready_s = pod.wait_probe("readinessProbe", 120)
            time.sleep(2.0)
            code, took = pod.stop(pod_spec["terminationGracePeriodSeconds"])
            lines = log_lines(pod)
            text = pod.logs()
        finally:
            pod.remove()
        assert code == 0 and took < pod_spec["terminationGracePeriodSeconds"]
        stopped = event(lines, "worker stopped")
        assert stopped["failed"] == 0
        # Read back on the broker's PLAINTEXT listener, decoded with the registry's schemas.
        records = accounting.read_tickers(stack.bootstrap_servers, stack.registry_url, f"{unique_prefix}.ticker")
        symbols = len(read_all(stack.bootstrap_servers, f"{unique_prefix}.symbols")) - seeded_symbols
        assert records, "nothing produced through SASL_SSL"
        assert stopped["acked"] == len(records) + symbols, (stopped, len(records), symbols)
        for secret in (password, registry_password):
            assert secret not in text, "a secret appears in the worker log"
        print(f"\n[container/sasl_ssl] seed Job ok; worker ready in {ready_s:.1f}s through SASL_SSL/SCRAM-SHA-512 + "
              f"registry basic auth; exit 0 after {took:.1f}s; acked {stopped['acked']} = ticker {len(records)} "
              f"+ symbols {symbols}")
    finally:
        if proxy is not None:
            proxy.stop()
        stack.down()
