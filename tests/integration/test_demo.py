"""`ingest demo` end to end: it shows a table only once records arrive, and SIGINT, SIGTERM or SIGHUP stop every
process it started (the two JVMs, the simulator, the worker); a stack it did not start is reused with a warning
and left running.

Each run gets its own XDG_STATE_HOME, so the demo's stack lives in a temporary directory, never in a developer's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ingest.devstack.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

FIRST_TABLE_TIMEOUT_S = 300  # two JVMs start on a shared 2-core machine before the first record can arrive
EXIT_TIMEOUT_S = 120  # worker flush (10 s grace) + two JVM stops (30 s each at most)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Demo:
    """A running `ingest demo --plain`, its output collected by threads (a full pipe would block it)."""

    def __init__(self, state_home: Path, *args: str, sigint_ignored: bool = False) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("INGEST_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")}
        env.update(XDG_STATE_HOME=str(state_home), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "ingest.cli", "demo", "--plain", "--rows", "3",
                                      "--sim-symbols", "20", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     stdin=subprocess.DEVNULL,
                                     # as a background job of a script or a CI runner starts it
                                     preexec_fn=_ignore_sigint if sigint_ignored else None)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [threading.Thread(target=lambda s=stream, k=sink: k.extend(iter(s.readline, "")), daemon=True)
                         for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))]
        for reader in self._readers:
            reader.start()

    def close(self) -> None:
        """Kill the demo if it still runs (a failed test) and every process under it; close the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        for pid in descendants(self.proc.pid):
            os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        for reader in self._readers:
            reader.join(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def wait_for_table(self) -> None:
        deadline = time.monotonic() + FIRST_TABLE_TIMEOUT_S
        while not any("records consumed from Kafka" in line for line in self.stdout):
            assert self.proc.poll() is None, f"demo exited early:\n{''.join(self.stderr)}"
            assert time.monotonic() < deadline, f"no table in time:\n{''.join(self.stderr)}"
            time.sleep(0.5)


@pytest.mark.parametrize(("sig", "sigint_ignored"),
                         [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False),
                          (signal.SIGHUP, False)],
                         ids=["SIGINT", "SIGINT-started-in-background", "SIGTERM", "SIGHUP"])
def test_demo_stops_everything_it_started_on(sig, sigint_ignored, tmp_path):
    demo = Demo(tmp_path, sigint_ignored=sigint_ignored)
    try:
        demo.wait_for_table()
        started = descendants(demo.proc.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in started if alive(pid)]
        assert sum(b"java" in c for c in commands) == 2, "expected the Kafka and registry JVMs"
        assert any(b"ingest.cli\x00sim" in c for c in commands) and any(b"ingest.cli\x00run" in c for c in commands)
        # Nothing is drawn before records arrive: the demo says what it waits for instead.
        first_table = next(i for i, line in enumerate(demo.stdout) if "records consumed from Kafka" in line)
        assert not any(" 0 records consumed" in line for line in demo.stdout[:first_table + 1])

        demo.proc.send_signal(sig)
        assert demo.proc.wait(timeout=EXIT_TIMEOUT_S) == 0
        time.sleep(0.5)
        assert not [pid for pid in started if alive(pid)], f"orphans after {sig.name}"
        assert "everything it started is stopped" in "".join(demo.stderr)
    finally:
        demo.close()


def test_demo_reuses_a_running_stack_with_a_warning_and_leaves_it_running(tmp_path):
    stack = LocalStack(tmp_path / "binance-ingest" / "demo-stack")
    stack.up()
    demo = Demo(tmp_path)
    try:
        demo.wait_for_table()
        assert any("warning: reusing the demo stack already running" in line for line in demo.stderr)
        started = descendants(demo.proc.pid)
        demo.proc.send_signal(signal.SIGTERM)
        assert demo.proc.wait(timeout=EXIT_TIMEOUT_S) == 0
        time.sleep(0.5)
        assert not [pid for pid in started if alive(pid)], "the simulator or the worker outlived the demo"
        assert stack.kafka_running() and stack.registry_running(), "a stack the demo did not start was stopped"
    finally:
        demo.close()
        stack.down()
