"""Security against a real broker and a real registry configured that way (issue item 9).

One private stack per module (tests/secure.py): Kafka 4.1.1 with a SASL_SSL listener (SCRAM-SHA-512
users created at format time) and an SSL listener that requires client certificates, both serving a
certificate of our own CA; Apicurio Registry behind Debian's nginx with HTTP basic auth over HTTPS (same CA;
Apicurio 3.0.x authenticates only through OIDC, so a reverse proxy is the honest basic-auth setup). The worker reaches
Kafka only through the secured listener under test; the test reads topics back on the broker's PLAINTEXT
listener and decodes with the registry directly.

Every test greps the worker's whole log and its /metrics page for each secret it was given.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.devstack.stack import LocalStack
from tests.faults import accounting
from tests.secure import BasicAuthProxy, SecureListeners, make_ca, prepare_secure_kafka
from tests.worker_fixture import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.faults]

USER = "ingest-worker"
PASSWORD = "scram-" + secrets.token_hex(12)
REGISTRY_USER = "ingest"
REGISTRY_PASSWORD = "registry-" + secrets.token_hex(12)
KEY_PASSWORD = "clientkey-" + secrets.token_hex(12)


@dataclass
class Secure:
    stack: LocalStack
    listeners: SecureListeners
    proxy: BasicAuthProxy | None
    directory: Path

    @property
    def plain_bootstrap(self) -> str:
        return self.stack.bootstrap_servers

    @property
    def registry_direct(self) -> str:
        return self.stack.registry_url


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    directory = tmp_path_factory.mktemp("secure-stack")
    listeners = prepare_secure_kafka(directory, {USER: PASSWORD})
    pki = listeners.pki.ca_pem.parent
    # The client key encrypted with a passphrase, which then is a secret of the properties file.
    subprocess.run(["openssl", "pkey", "-in", "client.key", "-aes256", "-passout", f"pass:{KEY_PASSWORD}",
                    "-out", "client-encrypted.key"], cwd=pki, check=True, capture_output=True)
    make_ca(pki, "other-ca", "some other CA")
    stack = LocalStack(directory)
    proxy = None
    try:
        stack.up()
        if shutil.which("nginx"):
            proxy = BasicAuthProxy(directory / "proxy", stack.state.registry_port, {REGISTRY_USER: REGISTRY_PASSWORD},
                                   tls=(pki / "server.pem", pki / "server.key"))
            proxy.start()
        yield Secure(stack, listeners, proxy, directory)
    finally:
        if proxy is not None:
            proxy.stop()
        stack.down()


def registry_ca_bundle(secure: Secure, tmp_path: Path) -> Path:
    """Public CAs plus our private CA: SSL_CERT_FILE is read by the registry client (and by every other TLS
    client in the process, hence the public CAs: Binance's REST and WebSocket endpoints need them)."""
    bundle = tmp_path / "ca-bundle.pem"
    system = Path(ssl.get_default_verify_paths().openssl_cafile)
    bundle.write_text(system.read_text() + secure.listeners.pki.ca_pem.read_text())
    return bundle


def start_worker(secure: Secure, tmp_path: Path, sim, prefix: str, env: dict[str, str], *args: str,
                 registry: str | None = None) -> WorkerProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    full_env.update(KAFKA_BOOTSTRAP_SERVERS=secure.listeners.sasl_ssl,
                    SCHEMA_REGISTRY_URL=registry or secure.registry_direct)
    full_env.update(env)
    return WorkerProcess(["--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                          "--topic-prefix", prefix, "--backoff-initial-s", "0.5", "--backoff-max-s", "2", *args],
                         full_env, tmp_path / f"worker-{time.monotonic_ns()}.log")


def assert_not_leaked(worker: WorkerProcess, *secrets_given: str, metrics_text: str | None = None) -> None:
    """No secret in the worker's log (every line, including tracebacks) nor on /metrics."""
    log_text = worker.log_path.read_text(errors="replace")
    assert log_text, "the worker wrote no log at all"
    if metrics_text is None:
        metrics_text = worker.get("/metrics")[1]
    for secret in secrets_given:
        assert secret not in log_text, "a secret appears in the worker log"
        assert secret not in metrics_text, "a secret appears on /metrics"


def run_and_account(secure: Secure, sim, worker: WorkerProcess, prefix: str, seconds: float = 2.5):
    worker.wait_ready(90)
    time.sleep(seconds)
    final, state = accounting.quiesce(sim, worker)
    metrics_text = worker.get("/metrics")[1]
    figures = accounting.check(sim, final, secure.plain_bootstrap, secure.registry_direct, prefix,
                               snapshot_entries=state.snapshot_entries)
    assert figures.in_kafka_websocket > 0
    print(figures.line())
    return figures, metrics_text


def test_sasl_ssl_scram_from_env_with_registry_basic_auth(secure, sim_factory, tmp_path, unique_prefix):
    """SASL_SSL + SCRAM-SHA-512 with the password in INGEST_KAFKA_SASL_PASSWORD, the custom CA in
    INGEST_KAFKA_SSL_CA_LOCATION, and the registry reached only through the basic-auth proxy with
    INGEST_SCHEMA_REGISTRY_USER_INFO. Catches: Kafka properties from the environment not reaching the producer
    or the admin client, registry user info not sent, and any secret written to the log or /metrics."""
    if secure.proxy is None:
        pytest.skip("nginx is not installed (.ci/setup installs nginx-light) - registry basic auth not testable")
    sim = sim_factory(symbols=8, interval=0.25, seed=21)
    worker = start_worker(secure, tmp_path, sim, unique_prefix, {
        "INGEST_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "INGEST_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "INGEST_KAFKA_SASL_USERNAME": USER, "INGEST_KAFKA_SASL_PASSWORD": PASSWORD,
        "INGEST_KAFKA_SSL_CA_LOCATION": str(secure.listeners.pki.ca_pem),
        "INGEST_SCHEMA_REGISTRY_USER_INFO": f"{REGISTRY_USER}:{REGISTRY_PASSWORD}",
        "SSL_CERT_FILE": str(registry_ca_bundle(secure, tmp_path))}, registry=secure.proxy.url)
    _, metrics_text = run_and_account(secure, sim, worker, unique_prefix)
    assert_not_leaked(worker, PASSWORD, REGISTRY_PASSWORD, metrics_text=metrics_text)
    assert worker.stop() == 0
    assert_not_leaked(worker, PASSWORD, REGISTRY_PASSWORD, metrics_text=metrics_text)
    # The registry calls went through nginx, authenticated as our user (nginx logs $remote_user).
    access = (secure.proxy.directory / "logs" / "access.log").read_text()
    assert f" - {REGISTRY_USER} [" in access and f"{unique_prefix}.miniticker-value" in access
    assert REGISTRY_PASSWORD not in access


def test_sasl_ssl_password_from_properties_file(secure, sim_factory, tmp_path, unique_prefix):
    """The SCRAM password read from --kafka-properties-file (a mounted Secret in Kubernetes). Catches: the
    properties file not applied to producer and admin client, or its secret values logged at start."""
    props = tmp_path / "client.properties"
    props.write_text("# mounted from a Secret\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
                     f"sasl.username={USER}\nsasl.password={PASSWORD}\nssl.ca.location={secure.listeners.pki.ca_pem}\n")
    sim = sim_factory(symbols=6, interval=0.25, seed=22)
    worker = start_worker(secure, tmp_path, sim, unique_prefix, {}, "--kafka-properties-file", str(props))
    _, metrics_text = run_and_account(secure, sim, worker, unique_prefix, seconds=1.5)
    assert worker.stop() == 0
    assert_not_leaked(worker, PASSWORD, metrics_text=metrics_text)


def test_mutual_tls_with_encrypted_client_key(secure, sim_factory, tmp_path, unique_prefix):
    """TLS with the custom CA and a client certificate (the SSL listener requires one); the key's passphrase is
    in the properties file. Catches: client-certificate settings not passed through, the key passphrase logged."""
    pki = secure.listeners.pki
    props = tmp_path / "mtls.properties"
    props.write_text(f"security.protocol=SSL\nssl.ca.location={pki.ca_pem}\n"
                     f"ssl.certificate.location={pki.client_cert}\n"
                     f"ssl.key.location={pki.ca_pem.parent / 'client-encrypted.key'}\n"
                     f"ssl.key.password={KEY_PASSWORD}\n")
    sim = sim_factory(symbols=6, interval=0.25, seed=23)
    worker = start_worker(secure, tmp_path, sim, unique_prefix, {"KAFKA_BOOTSTRAP_SERVERS": secure.listeners.ssl},
                          "--kafka-properties-file", str(props))
    _, metrics_text = run_and_account(secure, sim, worker, unique_prefix, seconds=1.5)
    assert worker.stop() == 0
    assert_not_leaked(worker, KEY_PASSWORD, metrics_text=metrics_text)


def _refused(secure: Secure, case: str, tmp_path: Path) -> tuple[dict[str, str], str | None, list[str]]:
    """(env, registry URL, secrets) of a worker that must be refused."""
    pki = secure.listeners.pki
    sasl = {"INGEST_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "INGEST_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "INGEST_KAFKA_SASL_USERNAME": USER, "INGEST_KAFKA_SASL_PASSWORD": PASSWORD,
            "INGEST_KAFKA_SSL_CA_LOCATION": str(pki.ca_pem)}
    if case == "wrong_scram_password":
        wrong = "wrong-" + secrets.token_hex(12)
        return {**sasl, "INGEST_KAFKA_SASL_PASSWORD": wrong}, None, [wrong, PASSWORD]
    if case == "untrusted_ca":
        return {**sasl, "INGEST_KAFKA_SSL_CA_LOCATION": str(pki.ca_pem.parent / "other-ca.pem")}, None, [PASSWORD]
    if case == "no_client_certificate":
        return {"INGEST_KAFKA_SECURITY_PROTOCOL": "SSL", "INGEST_KAFKA_SSL_CA_LOCATION": str(pki.ca_pem),
                "KAFKA_BOOTSTRAP_SERVERS": secure.listeners.ssl}, None, []
    if secure.proxy is None:
        pytest.skip("nginx is not installed - registry basic auth not testable")
    if case == "registry_untrusted_ca":  # the public CAs only: the proxy's certificate must be refused
        return ({**sasl, "INGEST_SCHEMA_REGISTRY_USER_INFO": f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"},
                secure.proxy.url, [REGISTRY_PASSWORD, PASSWORD])
    wrong = "wrong-" + secrets.token_hex(12)
    return ({**sasl, "INGEST_SCHEMA_REGISTRY_USER_INFO": f"{REGISTRY_USER}:{wrong}",
             "SSL_CERT_FILE": str(registry_ca_bundle(secure, tmp_path))}, secure.proxy.url, [wrong, PASSWORD])


@pytest.mark.parametrize("case", ["wrong_scram_password", "untrusted_ca", "no_client_certificate",
                                  "wrong_registry_password", "registry_untrusted_ca"])
def test_refused_connections_never_become_ready_and_leak_nothing(case, secure, sim_factory, tmp_path, unique_prefix):
    """A wrong SCRAM password, a broker certificate from a CA we do not trust, a missing client certificate,
    wrong registry credentials and a registry certificate from a CA we do not trust are all refused: the worker
    never reports ready and produces nothing, and the reason is in the log without the secret. Catches:
    certificate verification switched off (Kafka or registry), a listener that does not really authenticate,
    and credentials echoed in error messages."""
    env, registry, secrets_given = _refused(secure, case, tmp_path)
    sim = sim_factory(symbols=4, interval=0.5, seed=24)
    worker = start_worker(secure, tmp_path, sim, unique_prefix, env, registry=registry)
    deadline = time.monotonic() + 8
    ready_seen = False
    while time.monotonic() < deadline and worker.proc.poll() is None:
        with contextlib.suppress(OSError):
            ready_seen |= worker.get("/readyz")[0] == 200
        time.sleep(0.3)
    metrics_text = ""
    if worker.proc.poll() is None:
        metrics_text = worker.get("/metrics")[1]
        assert worker.metric("binance_ingest_records_produced_total") == 0
    # SIGKILL: a worker stuck in its start-up metadata request does not act on SIGTERM before that request's
    # 30 s timeout (shutdown behaviour is tested in test_shutdown.py); here only the refusal matters.
    code = worker.stop(signal.SIGKILL)
    assert not ready_seen, "a refused worker reported ready"
    log_text = worker.log_path.read_text(errors="replace").lower()
    expected = {"wrong_scram_password": "authentication", "untrusted_ca": "certificate verify failed",
                "no_client_certificate": "ssl", "wrong_registry_password": "401",
                "registry_untrusted_ca": "certificate verify failed"}[case]
    assert expected in log_text, f"no {expected!r} in the log:\n{worker.log_tail()}"
    for secret in secrets_given:
        assert secret.lower() not in log_text
        assert secret not in metrics_text
    print(f"[{case}] exit code {code}; log lines {len(log_text.splitlines())}")
