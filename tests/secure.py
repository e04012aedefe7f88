"""Secure modes for the local stack: TLS with our own CA, SASL_SSL with SCRAM-SHA-512, registry basic auth.

Why it looks like this:

* Production clusters are reached over TLS with a private CA and authenticate clients with SCRAM or client
  certificates; the worker's security settings are only proven by connecting to a broker configured that way.
  ``prepare_secure_kafka`` turns a LocalStack state directory into such a broker *before* it first starts.
* Certificates come from the ``openssl`` CLI and Java stores from ``keytool`` (both ship with the JDK/Debian
  packages the stack already needs), so no extra Python dependency and nothing copied from elsewhere.
* KRaft creates SCRAM credentials at storage-format time (``kafka-storage format --add-scram``), so users are
  written to ``kafka-format.args`` and exist before any listener accepts a connection.
* The broker keeps its PLAINTEXT listener (stack tooling's readiness probe and tests that read topics back use
  it) and gains a SASL_SSL listener and an SSL listener that requires client certificates.
* Apicurio Registry 3.0.x only authenticates through an OIDC server; the usual real-world setup for basic auth
  is a reverse proxy, so ``BasicAuthProxy`` runs Debian's nginx with an htpasswd file in front of the registry.
"""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ingest.devstack.jars import StackError
from ingest.devstack.stack import HOST, REGISTRY_API, free_port

STORE_PASSWORD = "stack-store-pass"
CERT_DAYS = "2"


def _run(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(f"{cmd[0]} {cmd[1]} failed: {(done.stderr or done.stdout).strip()[-300:]}")


@dataclass(frozen=True)
class Pki:
    """A private CA and what was signed with it (all PEM, plus the Java stores for the broker)."""

    ca_pem: Path
    server_keystore: Path  # PKCS12: server key + cert chain
    truststore: Path  # PKCS12: the CA, to verify client certificates
    client_cert: Path
    client_key: Path
    store_password: str = STORE_PASSWORD


def _new_key(directory: Path, name: str) -> Path:
    key = directory / f"{name}.key"
    _run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", key.name],
         directory)
    return key


def _sign(directory: Path, name: str, subject: str, extensions: str, ca_name: str) -> Path:
    """Key + certificate ``name`` signed by the CA ``ca_name`` with the given X.509v3 extensions."""
    _new_key(directory, name)
    (directory / f"{name}.ext").write_text(extensions)
    _run(["openssl", "req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr"], directory)
    _run(["openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca_name}.pem", "-CAkey", f"{ca_name}.key",
          "-CAcreateserial", "-days", CERT_DAYS, "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.pem"],
         directory)
    return directory / f"{name}.pem"


def make_ca(directory: Path, name: str = "ca", common_name: str = "binance-ingest local CA") -> Path:
    """A self-signed CA certificate ``<name>.pem`` (key ``<name>.key``) valid for two days."""
    directory.mkdir(parents=True, exist_ok=True)
    _new_key(directory, name)
    _run(["openssl", "req", "-x509", "-new", "-key", f"{name}.key", "-sha256", "-days", CERT_DAYS,
          "-subj", f"/CN={common_name}", "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", f"{name}.pem"], directory)
    return directory / f"{name}.pem"


def make_pki(directory: Path) -> Pki:
    """CA, broker certificate for 127.0.0.1/localhost, a client certificate, and the broker's PKCS12 stores."""
    ca = make_ca(directory)
    _sign(directory, "server", "/CN=localhost",
          "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n", "ca")
    client = _sign(directory, "client", "/CN=binance-ingest-worker", "extendedKeyUsage=clientAuth\n", "ca")
    _run(["openssl", "pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key", "-certfile", "ca.pem",
          "-name", "kafka", "-out", "server.p12", "-passout", f"pass:{STORE_PASSWORD}"], directory)
    truststore = directory / "truststore.p12"
    truststore.unlink(missing_ok=True)
    _run(["keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem", "-keystore", truststore.name,
          "-storetype", "PKCS12", "-storepass", STORE_PASSWORD], directory)
    return Pki(ca, directory / "server.p12", truststore, client, directory / "client.key")


@dataclass(frozen=True)
class SecureListeners:
    """Where the secured broker listens, besides its PLAINTEXT port."""

    sasl_ssl: str
    ssl: str
    pki: Pki


def prepare_secure_kafka(state_dir: Path, users: dict[str, str], pki: Pki | None = None) -> SecureListeners:
    """Configure a not-yet-started LocalStack directory for SASL_SSL (SCRAM-SHA-512) and mutual-TLS listeners.

    Call it as ``local_stack_factory(prepare=...)`` or before ``LocalStack(state_dir).up()``. ``users`` maps
    SCRAM user names to passwords; they are created when the storage is formatted.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    pki = pki or make_pki(state_dir / "pki")
    kafka_port, controller_port, sasl_port, ssl_port = (free_port() for _ in range(4))
    listeners = (f"PLAINTEXT://{HOST}:{kafka_port},CONTROLLER://{HOST}:{controller_port},"
                 f"SASL_SSL://{HOST}:{sasl_port},SSL://{HOST}:{ssl_port}")
    overrides = {
        "listeners": listeners,
        "advertised.listeners": f"PLAINTEXT://{HOST}:{kafka_port},SASL_SSL://{HOST}:{sasl_port},"
                                f"SSL://{HOST}:{ssl_port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(pki.server_keystore),
        "ssl.keystore.password": pki.store_password,
        "ssl.key.password": pki.store_password,
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": str(pki.truststore),
        "ssl.truststore.password": pki.store_password,
        "listener.name.ssl.ssl.client.auth": "required",
    }
    state = {"kafka_port": kafka_port, "controller_port": controller_port, "kafka_overrides": overrides}
    (state_dir / "state.json").write_text(json.dumps(state, indent=2))
    for name, password in users.items():
        if any(c in name + password for c in ",=[]\n"):
            raise StackError("SCRAM user names and passwords may not contain , = [ ] or newlines")
    (state_dir / "kafka-format.args").write_text("".join(
        f"--add-scram\nSCRAM-SHA-512=[name={name},password={password}]\n" for name, password in users.items()))
    return SecureListeners(f"{HOST}:{sasl_port}", f"{HOST}:{ssl_port}", pki)


def apr1_hash(password: str) -> str:
    """An htpasswd-style hash (``openssl passwd -apr1``), which nginx's auth_basic accepts."""
    done = subprocess.run(["openssl", "passwd", "-apr1", "-stdin"], input=password, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


class BasicAuthProxy:
    """nginx with HTTP basic auth in front of the registry; runs in the foreground and stops by itself.

    ``max_lifetime_s`` bounds its life (coreutils ``timeout``) so a crashed test run leaves nothing behind.
    """

    def __init__(self, directory: Path, upstream_port: int, users: dict[str, str],
                 max_lifetime_s: float = 1800.0, tls: tuple[Path, Path] | None = None) -> None:
        if shutil.which("nginx") is None:
            raise StackError("nginx is not installed (Debian: apt-get install nginx-light; see .ci/setup)")
        self.directory = directory.resolve()
        self.upstream_port = upstream_port
        self.port = free_port()
        self.max_lifetime_s = max_lifetime_s
        self.tls = tls  # (certificate, key) in PEM: serve HTTPS, as basic auth should only travel encrypted
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "logs").mkdir(exist_ok=True)
        (self.directory / "htpasswd").write_text("".join(f"{u}:{apr1_hash(p)}\n" for u, p in users.items()))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}{REGISTRY_API}"

    def _config(self) -> str:
        d = self.directory
        temp = "".join(f"    {kind}_temp_path {d}/{kind}_temp;\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        listen = f"        listen {HOST}:{self.port};\n"
        if self.tls:
            listen = (f"        listen {HOST}:{self.port} ssl;\n"
                      f"        ssl_certificate {self.tls[0]};\n        ssl_certificate_key {self.tls[1]};\n")
        return (
            "daemon off;\nmaster_process off;\nworker_processes 1;\n"
            f"pid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            f"    access_log {d}/logs/access.log;\n{temp}"
            "    server {\n"
            f"{listen}"
            '        auth_basic "schema registry";\n'
            f"        auth_basic_user_file {d}/htpasswd;\n"
            "        location / {\n"
            f"            proxy_pass http://{HOST}:{self.upstream_port};\n"
            "            proxy_set_header Host $host:$server_port;\n"
            "            proxy_set_header Authorization \"\";\n"
            "        }\n"
            "    }\n"
            "}\n"
        )

    @property
    def ca_file(self) -> Path:
        """The CA that signed the proxy's certificate (``ca.pem`` next to it, as ``make_pki`` writes it)."""
        assert self.tls is not None
        return self.tls[0].parent / "ca.pem"

    def start(self, timeout_s: float = 15.0) -> None:
        conf = self.directory / "nginx.conf"
        conf.write_text(self._config())
        log = (self.directory / "logs" / "nginx.out").open("ab")
        try:
            self.proc = subprocess.Popen(
                ["timeout", "--kill-after=5", str(int(self.max_lifetime_s)), "nginx", "-p", str(self.directory),
                 "-c", str(conf), "-e", str(self.directory / "logs" / "error.log")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"nginx exited: {(self.directory / 'logs' / 'error.log').read_text()[-300:]}")
            try:
                context = ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None
                urllib.request.urlopen(self.url + "/subjects", timeout=1, context=context)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise StackError(f"nginx did not answer on {self.url} in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # timeout forwards it to nginx: fast shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
