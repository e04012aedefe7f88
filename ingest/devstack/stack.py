"""Run a real single-node Kafka (KRaft) and Apicurio Registry as local JVM processes.

Everything the stack owns lives in one state directory: ``state.json`` (pids, ports, cluster id), the
Kafka data and the logs. Each JVM is started with ``-Dbinance.ingest.stack=<state dir>`` so that ``down``
kills exactly the processes this directory started, even if a pid was reused by something else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.devstack.jars import Jars, StackError, install_all

HOST = "127.0.0.1"
REGISTRY_API = "/apis/ccompat/v7"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PortTakenError(StackError):
    """A port the user asked for is in use: their choice to change (``ingest stack`` exits 2, as for bad
    configuration), not a failure of the stack."""


def check_port_free(port: int, what: str) -> None:
    with socket.socket() as sock:
        # Servers (the JVM included) bind with SO_REUSEADDR, so a port in TIME_WAIT is still usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            raise PortTakenError(f"port {port} for {what} is taken; pick another or use 0 for a free one") from None


def _pid_alive(pid: int, marker: str) -> bool:
    """True if ``pid`` runs and is one of ours (its command line carries our marker)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


@dataclass
class StackState:
    """What ``state.json`` holds."""

    kafka_port: int = 0
    controller_port: int = 0
    registry_port: int = 0
    kafka_pid: int = 0
    registry_pid: int = 0
    cluster_id: str = ""
    kafka_overrides: dict[str, str] = field(default_factory=dict)


class LocalStack:
    """A local Kafka broker + Schema Registry owned by one state directory."""

    def __init__(self, state_dir: Path, jars: Jars | None = None) -> None:
        self.state_dir = state_dir.expanduser().resolve()
        self.marker = f"-Dbinance.ingest.stack={self.state_dir}"
        self._jars = jars
        self.state = self._load()
        # Popen handles of the JVMs this object started: kept so they are reaped (waited for) on stop.
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    # ----- addresses -----
    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.state.kafka_port}"

    @property
    def registry_url(self) -> str:
        return f"http://{HOST}:{self.state.registry_port}{REGISTRY_API}"

    def env_lines(self) -> str:
        """``export K=V`` lines, so ``eval "$(ingest stack up)"`` sets them for every later command."""
        return (f"export KAFKA_BOOTSTRAP_SERVERS={self.bootstrap_servers}\n"
                f"export SCHEMA_REGISTRY_URL={self.registry_url}\n")

    # ----- state file -----
    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def _load(self) -> StackState:
        try:
            return StackState(**json.loads(self._state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return StackState()

    def _save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._state_file.write_text(json.dumps(self.state.__dict__, indent=2))

    @property
    def jars(self) -> Jars:
        if self._jars is None:
            self._jars = install_all()
        return self._jars

    # ----- status -----
    def kafka_running(self) -> bool:
        return bool(self.state.kafka_pid) and _pid_alive(self.state.kafka_pid, self.marker)

    def registry_running(self) -> bool:
        return bool(self.state.registry_pid) and _pid_alive(self.state.registry_pid, self.marker)

    def status(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "kafka": {"running": self.kafka_running(), "pid": self.state.kafka_pid,
                      "bootstrap_servers": self.bootstrap_servers if self.state.kafka_port else None},
            "registry": {"running": self.registry_running(), "pid": self.state.registry_pid,
                         "url": self.registry_url if self.state.registry_port else None},
        }

    # ----- lifecycle -----
    def up(self, kafka_port: int = 0, registry_port: int = 0, timeout: float = 180.0) -> None:
        """Start whatever is not running yet and wait until both answer. Safe to call twice."""
        jars = self.jars
        if not self.kafka_running():
            self._choose_kafka_ports(kafka_port)
            self.start_kafka(jars)
        if not self.registry_running():
            self._choose_registry_port(registry_port)
            self.start_registry(jars)
        deadline = time.monotonic() + timeout
        self.wait_kafka_ready(deadline)
        self.wait_registry_ready(deadline)

    def down(self) -> list[str]:
        """Stop exactly the processes this state directory started; return what was stopped."""
        stopped = []
        if self.stop_registry():
            stopped.append("registry")
        if self.stop_kafka():
            stopped.append("kafka")
        return stopped

    def _choose_kafka_ports(self, kafka_port: int) -> None:
        if kafka_port:
            check_port_free(kafka_port, "Kafka")
            self.state.kafka_port = kafka_port
        elif not self.state.kafka_port or not _port_bindable(self.state.kafka_port):
            self.state.kafka_port = free_port()
        if not self.state.controller_port or not _port_bindable(self.state.controller_port):
            self.state.controller_port = free_port()

    def _choose_registry_port(self, registry_port: int) -> None:
        if registry_port:
            check_port_free(registry_port, "the Schema Registry")
            self.state.registry_port = registry_port
        elif not self.state.registry_port or not _port_bindable(self.state.registry_port):
            self.state.registry_port = free_port()

    # ----- Kafka -----
    def _kafka_properties(self) -> str:
        s = self.state
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{s.controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{s.kafka_port},CONTROLLER://{HOST}:{s.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.state_dir / "kafka-data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
        }
        props.update(s.kafka_overrides)
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _java(self, jvm_opts: list[str], args: list[str], log: Path | None) -> subprocess.Popen[bytes]:
        log_target = log.open("ab") if log else subprocess.DEVNULL
        try:
            return subprocess.Popen(
                ["java", self.marker, *jvm_opts, *args],
                stdout=log_target, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.state_dir,
            )
        finally:
            if log:
                log_target.close()  # type: ignore[union-attr]

    def start_kafka(self, jars: Jars | None = None) -> None:
        jars = jars or self.jars
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        config = self.state_dir / "server.properties"
        config.write_text(self._kafka_properties())
        log4j = self.state_dir / "log4j2.properties"
        log4j.write_text("rootLogger.level = INFO\nrootLogger.appenderRef.stdout.ref = STDOUT\n"
                         "appender.console.type = Console\nappender.console.name = STDOUT\n"
                         "appender.console.layout.type = PatternLayout\n"
                         "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
                         "logger.kafka.name = kafka\nlogger.kafka.level = INFO\n"
                         "logger.state.name = state.change.logger\nlogger.state.level = WARN\n")
        classpath = f"{jars.kafka_libs}/*"
        common = ["-cp", classpath, f"-Dlog4j2.configurationFile={log4j}"]
        if not (self.state_dir / "kafka-data" / "meta.properties").exists():
            self.state.cluster_id = self.state.cluster_id or _kafka_cluster_id()
            fmt = subprocess.run(
                ["java", *common, "kafka.tools.StorageTool", "format", "-t", self.state.cluster_id,
                 "-c", str(config), "--ignore-formatted", *self._format_extra()],
                capture_output=True, text=True, check=False, cwd=self.state_dir,
            )
            if fmt.returncode != 0:
                raise StackError(f"formatting Kafka storage failed: {(fmt.stderr or fmt.stdout).strip()[-300:]}")
        heap = os.environ.get("INGEST_STACK_KAFKA_HEAP", "512m")
        jvm = [f"-Xmx{heap}", "-Xms128m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
               *common, *self._kafka_jvm_extra()]
        proc = self._java(jvm, ["kafka.Kafka", str(config)], self.state_dir / "logs" / "kafka.log")
        self._procs[proc.pid] = proc
        self.state.kafka_pid = proc.pid
        self._save()

    def _format_extra(self) -> list[str]:
        """Extra StorageTool arguments, one per line in ``kafka-format.args`` (e.g. ``--add-scram`` users):
        KRaft creates SCRAM credentials at format time, before any listener needs them."""
        extra = self.state_dir / "kafka-format.args"
        return [line for line in extra.read_text().splitlines() if line.strip()] if extra.exists() else []

    def _kafka_jvm_extra(self) -> list[str]:
        jaas = self.state_dir / "kafka_jaas.conf"
        return [f"-Djava.security.auth.login.config={jaas}"] if jaas.exists() else []

    def stop_kafka(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
        return self._stop_role("kafka_pid", sig, timeout)

    def _stop_role(self, pid_field: str, sig: int, timeout: float) -> bool:
        """Stop the process whose pid ``state.<pid_field>`` holds, reap it, and record that it is gone."""
        pid = getattr(self.state, pid_field)
        stopped = _stop(pid, self.marker, sig, timeout)
        proc = self._procs.pop(pid, None)
        if proc is not None:
            proc.wait(timeout=10)
        setattr(self.state, pid_field, 0)
        if self._state_file.exists():
            self._save()
        return stopped

    def wait_kafka_ready(self, deadline: float) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "socket.timeout.ms": 2000,
                             "log_level": 0, "logger": _quiet_logger()})
        while True:
            if not self.kafka_running():
                raise StackError(f"Kafka exited during start; log: {_tail(self.state_dir / 'logs' / 'kafka.log')}")
            try:
                md = admin.list_topics(timeout=2)
                if md.brokers:
                    return
            except Exception:  # noqa: S110 - not ready yet, keep polling until the deadline
                pass
            if time.monotonic() > deadline:
                raise StackError(f"Kafka did not answer metadata requests in time on {self.bootstrap_servers}")
            time.sleep(0.5)

    # ----- registry -----
    def start_registry(self, jars: Jars | None = None) -> None:
        jars = jars or self.jars
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        heap = os.environ.get("INGEST_STACK_REGISTRY_HEAP", "384m")
        jvm = [f"-Xmx{heap}", "-XX:TieredStopAtLevel=1", f"-Dquarkus.http.port={self.state.registry_port}",
               f"-Dquarkus.http.host={HOST}", "-Dquarkus.log.level=WARN",
               "-Dquarkus.log.category.\"io.apicurio\".level=INFO", *self._registry_jvm_extra()]
        proc = self._java(jvm, ["-jar", str(jars.registry_runner)], self.state_dir / "logs" / "registry.log")
        self._procs[proc.pid] = proc
        self.state.registry_pid = proc.pid
        self._save()

    def _registry_jvm_extra(self) -> list[str]:
        extra = self.state_dir / "registry-jvm.options"
        return extra.read_text().split() if extra.exists() else []

    def stop_registry(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
        return self._stop_role("registry_pid", sig, timeout)

    def wait_registry_ready(self, deadline: float) -> None:
        url = self.registry_url + "/subjects"
        while True:
            if not self.registry_running():
                raise StackError(
                    f"Schema Registry exited during start; log: {_tail(self.state_dir / 'logs' / 'registry.log')}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own localhost URL
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise StackError(f"Schema Registry did not answer {url} in time")
            time.sleep(0.5)


def _port_bindable(port: int) -> bool:
    try:
        check_port_free(port, "")
    except StackError:
        return False
    return True


def _kafka_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (what StorageTool makes).

    Like Kafka's own generator it never starts with '-', which StorageTool would read as an option.
    """
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _stop(pid: int, marker: str, sig: int, timeout: float) -> bool:
    if not pid or not _pid_alive(pid, marker):
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid, marker):
            _reap(pid)
            return True
        _reap(pid)
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)
    time.sleep(0.2)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _quiet_logger() -> Any:
    import logging

    logger = logging.getLogger("ingest.devstack.admin")
    logger.setLevel(logging.CRITICAL)
    return logger
