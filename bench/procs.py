"""Child processes for the end-to-end benchmarks (simulator, worker, naive pipeline) and what /proc says of them.

Why /proc: CPU seconds and peak RSS must be the child's own (utime+stime, VmHWM), not the benchmark's.
Every child gets stdin=PIPE and exits when the benchmark goes away (``--exit-on-stdin-eof`` for the
simulator, a kill in ``stop`` for the others), so nothing outlives a run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition

from ingest.devstack.stack import free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Child:
    """A benchmark child process with its log."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env={**os.environ, **(env or {})}, text=True, cwd=cwd)

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Sim(Child):
    def __init__(self, log_dir: Path, *flags: str) -> None:
        super().__init__("sim", [sys.executable, "-m", "ingest.cli", "sim", "--port", "0", "--seed", "1",
                                 "--exit-on-stdin-eof", "--max-queue-frames", "1000000",
                                 "--serve-retired-streams", *flags], log_dir)  # benchmarks measure !ticker@arr
        assert self.proc.stdout is not None
        self.ws_url = self.proc.stdout.readline().strip()
        self.http_url = self.proc.stdout.readline().strip()
        if not self.ws_url.startswith("ws://"):
            raise RuntimeError(f"simulator did not start: {self.tail()}")

    def stats(self) -> dict:
        with urllib.request.urlopen(self.http_url + "/_sim/stats", timeout=5) as resp:
            return orjson.loads(resp.read())


class Worker(Child):
    def __init__(self, log_dir: Path, sim: Sim, bootstrap: str, registry: str, prefix: str, streams: str,
                 env: dict[str, str] | None = None) -> None:
        self.metrics_port = free_port()
        super().__init__("worker", [
            sys.executable, "-m", "ingest.cli", "run", "--streams", streams, "--ws-url", sim.ws_url,
            "--rest-url", sim.http_url, "--bootstrap-servers", bootstrap, "--schema-registry-url", registry,
            "--topic-prefix", prefix, "--metrics-host", "127.0.0.1", "--metrics-port", str(self.metrics_port),
            # the simulator serves the retired !ticker@arr here (--serve-retired-streams): measure it as it is,
            # not as the per-symbol streams a worker serves it with by default
            "--literal-ticker-arr", "true",
            "--snapshot-on-connect", "false", "--log-format", "json", "--log-level", "WARNING"], log_dir, env)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker exited: {self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"worker not ready in {timeout_s}s: {self.tail()}")


def acked_records(bootstrap: str, topics: list[str]) -> int:
    """Records Kafka has appended to ``topics`` (sum of high watermarks): what producers got acknowledged."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        total = 0
        meta = consumer.list_topics(timeout=10)
        for topic in topics:
            if topic not in meta.topics:
                continue
            for partition in meta.topics[topic].partitions:
                total += consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
        return total
    finally:
        consumer.close()
