"""The registry down at start: the worker waits (an outage is not a crash loop) and /readyz says it is the registry."""

from __future__ import annotations

import socket

import pytest

from ingest.sim.settings import DEFAULT_EXCHANGE_INFO

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def test_readyz_names_the_registry_while_start_up_waits_for_it(sim_factory, worker_factory, stack_endpoints):
    with socket.socket() as sock:  # bound, never listening: the "registry" refuses connections
        sock.bind(("127.0.0.1", 0))
        registry = f"http://127.0.0.1:{sock.getsockname()[1]}/apis/ccompat/v7"
        sim = sim_factory(exchange_info=DEFAULT_EXCHANGE_INFO, symbols=3, interval=1.0, seed=3)
        worker = worker_factory("--ws-url", sim.ws_url, "--rest-url", sim.http_url, "--topic-prefix", "readyzreg",
                                registry=registry)

        def registry_named() -> bool:
            try:
                status, body = worker.get("/readyz")
            except OSError:  # the metrics server is not up yet
                return False
            return status == 503 and f"registry: {registry} unreachable" in body

        worker.wait_for(registry_named, 60, "/readyz naming the registry")
        worker.check_alive()  # waiting, not exiting
