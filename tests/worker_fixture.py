"""Run the real worker (``ingest run``) as a subprocess, the way a deployment runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest.devstack.stack import free_port

_STARTED: list[WorkerProcess] = []
"""Every worker any test started, however it was started; the autouse fixture below stops the leftovers."""


class WorkerProcess:
    """One ``ingest run`` process with its log file and metrics port."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.metrics_port = free_port()
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "run", "--metrics-host", "127.0.0.1",
             "--metrics-port", str(self.metrics_port), "--log-format", "json", *args],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.returncode: int | None = None
        _STARTED.append(self)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=2) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples matching ``labels`` (0 when absent)."""
        _, text = self.get("/metrics")
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            metric_name, _, label_text = series.partition("{")
            if metric_name != name:
                continue
            if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                total += float(value)
        return total

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                status, _ = self.get("/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready in {timeout_s}s; log tail:\n{self.log_tail()}")

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if predicate():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; log tail:\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}; log tail:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self.returncode = self.proc.returncode
        return self.returncode

    def log_tail(self, lines: int = 30) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_events(self) -> list[dict]:
        if not self._log.closed:
            self._log.flush()
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


@pytest.fixture(autouse=True)
def _stop_leftover_workers() -> Iterator[None]:
    """A test that fails half-way must not leave its worker running into the next test."""
    yield
    while _STARTED:
        worker = _STARTED.pop()
        if worker.returncode is None:
            worker.stop()


@pytest.fixture
def worker_factory(stack_endpoints, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers against the test stack; every one is stopped at teardown."""
    workers: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, bootstrap: str | None = None,
              registry: str | None = None) -> WorkerProcess:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
        full_env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap or stack_endpoints.bootstrap_servers,
                        SCHEMA_REGISTRY_URL=registry or stack_endpoints.registry_url)
        full_env.update(env or {})
        worker = WorkerProcess(list(args), full_env, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
