"""A real Prometheus server for tests: Debian's ``prometheus`` binary with a temporary config and storage.

It binds 127.0.0.1 on a free port, scrapes the given targets every second, evaluates the given rule files every
second, and dies with the test process (PR_SET_PDEATHSIG), so no server outlives a test run.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM when the test process ends, however it ends."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Prometheus:
    """One Prometheus process. ``targets``: (host:port, extra target labels) pairs, all in one job."""

    def __init__(self, workdir: Path, targets: list[tuple[str, dict[str, str]]],
                 rule_files: tuple[Path, ...] = (), job: str = "binance-ingest") -> None:
        self.workdir = workdir
        self.targets = targets
        self.rule_files = rule_files
        self.job = job
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Prometheus:
        binary = shutil.which("prometheus")
        assert binary, "prometheus missing: run bash .ci/setup (installs Debian's prometheus package)"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self.port = free_port()
        log = (self.workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus not ready in {timeout}s: {self.log_tail()}")

    def _write_config(self) -> None:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [{"job_name": self.job, "static_configs": [
                {"targets": [address], "labels": labels} for address, labels in self.targets]}],
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))

    def add_target(self, address: str, labels: dict[str, str]) -> None:
        """Scrape one more target: rewrite the config and reload it (SIGHUP), as a service discovery would."""
        assert self.proc is not None
        self.targets.append((address, labels))
        self._write_config()
        self.proc.send_signal(signal.SIGHUP)
        self.wait_until(f"target {address} to be scraped", lambda: any(
            t["scrapeUrl"].startswith(f"http://{address}/") and t["health"] == "up"
            for t in self.api("targets")["activeTargets"]), timeout=30)

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))
        assert data["resultType"] == "matrix", (expr, data["resultType"])
        return data["result"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def log_tail(self, chars: int = 2000) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns ``data`` or raises with Prometheus' error message."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as err:
            body = json.load(err)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; returns the vector's samples (``metric`` labels and ``value``)."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return data["result"]

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.5)

    def targets_up(self) -> bool:
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def alert_states(self) -> dict[str, str]:
        """Alert name -> inactive/pending/firing, as the rule manager sees it now."""
        groups = self.api("rules", type="alert")["groups"]
        return {r["name"]: r["state"] for g in groups for r in g["rules"]}


def grafana_to_promql(expr: str, rate_interval: str = "30s") -> str:
    """A dashboard expression as Grafana sends it with 'All' selected in both variables."""
    return expr.replace("$__rate_interval", rate_interval).replace("$namespace", ".*").replace("$pod", ".*")
