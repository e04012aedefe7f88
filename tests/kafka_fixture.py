"""Real Kafka + Schema Registry for the tests, whichever way this machine can have them.

Order of preference, decided once per session:
1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``SCHEMA_REGISTRY_URL`` set: bring your own cluster.
2. A Docker engine answers: testcontainers (Kafka image + Apicurio Registry image).
3. Otherwise: the project's own local JVM stack (``ingest stack``) from Maven Central jars.
Nothing here is a mock: every path ends at a real broker and a real registry.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.devstack.stack import LocalStack

APICURIO_IMAGE = "quay.io/apicurio/apicurio-registry:3.0.9"
KAFKA_IMAGE = "apache/kafka:4.1.1"


@dataclass(frozen=True)
class Endpoints:
    """Where the tests find Kafka and the registry, and which path provided them."""

    bootstrap_servers: str
    registry_url: str
    provider: str


def _docker_answers() -> bool:
    """True when a Docker engine answers /_ping (a raw probe: the docker SDK leaks a socket when none runs)."""
    if os.environ.get("INGEST_TEST_NO_DOCKER"):
        return False
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: object = host[len("unix://"):]
        elif host.startswith("tcp://"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            hostname, _, port = host[len("tcp://"):].partition(":")
            address = (hostname, int(port or 2375))
        else:
            return False
        with sock:
            sock.settimeout(3)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(64)
    except OSError:
        return False


def _testcontainers_stack() -> Iterator[Endpoints]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka:
        registry = DockerContainer(APICURIO_IMAGE).with_exposed_ports(8080)
        with registry:
            wait_for_logs(registry, "Installed features", timeout=120)
            host = registry.get_container_host_ip()
            port = registry.get_exposed_port(8080)
            yield Endpoints(kafka.get_bootstrap_server(), f"http://{host}:{port}/apis/ccompat/v7", "testcontainers")


@pytest.fixture(scope="session")
def stack_endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    """One real Kafka + registry for the whole session."""
    env_bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    env_registry = os.environ.get("SCHEMA_REGISTRY_URL")
    if env_bootstrap and env_registry:
        yield Endpoints(env_bootstrap, env_registry.rstrip("/"), "external")
        return
    if _docker_answers():
        yield from _testcontainers_stack()
        return
    stack = LocalStack(tmp_path_factory.mktemp("stack"))
    stack.up()
    try:
        yield Endpoints(stack.bootstrap_servers, stack.registry_url, "local-jvm")
    finally:
        stack.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(stack_endpoints: Endpoints) -> str:
    return stack_endpoints.bootstrap_servers


@pytest.fixture(scope="session")
def schema_registry_url(stack_endpoints: Endpoints) -> str:
    return stack_endpoints.registry_url


@pytest.fixture
def unique_prefix() -> str:
    """A topic prefix no other test uses, so tests sharing one cluster never see each other's data."""
    return f"t{uuid.uuid4().hex[:10]}.spot"


@pytest.fixture
def local_stack_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalStack]]:
    """Private local stacks for fault tests that kill or reconfigure the broker; all stopped at teardown."""
    stacks: list[LocalStack] = []

    def make(prepare: Callable[[Path], None] | None = None) -> LocalStack:
        state_dir = tmp_path_factory.mktemp("private-stack")
        if prepare is not None:
            prepare(state_dir)
        stack = LocalStack(state_dir)
        stacks.append(stack)
        stack.up()
        return stack

    yield make
    for stack in stacks:
        stack.down()
