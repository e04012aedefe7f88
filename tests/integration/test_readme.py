"""The README's code blocks, run as written: every ```bash block after the first, each in a fresh bash from the
repository root, with a fresh HOME and state directory (no ../shared needed, nothing of the developer's reused
except the jar cache, so nothing is downloaded again).

The first block is the two setup lines: line 1 (`.ci/setup --demo && ingest demo`) is what
tests/integration/test_demo.py runs after setup, and line 2 is what `.ci/run` runs (the test suite itself).
```sh blocks are templates with placeholder addresses and are not run.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from ingest.devstack.jars import cache_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
FIXED_PORTS = (8765, 9108)  # the README's simulator and metrics ports
BLOCK_TIMEOUT_S = 600


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


BLOCKS = bash_blocks((ROOT / "README.md").read_text())


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # Like the servers (which bind with SO_REUSEADDR): a previous block's connections in TIME_WAIT are no conflict.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def test_the_first_block_is_the_two_setup_lines():
    lines = BLOCKS[0].strip().splitlines()
    assert lines[0].startswith("bash .ci/setup --demo && .venv/bin/ingest demo")
    assert lines[1].startswith("bash .ci/setup && .venv/bin/python -m pytest")
    assert ".venv/bin/python -m pytest" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("block", BLOCKS[1:], ids=[f"block{i + 2}" for i in range(len(BLOCKS) - 1)])
def test_readme_block_runs_as_written(block, tmp_path):
    busy = [port for port in FIXED_PORTS if not _port_free(port)]
    if busy and any(str(port) in block for port in busy):
        pytest.skip(f"the README's fixed port(s) {busy} are in use on this machine")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INGEST_", "XDG_")) and k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")}
    env.update(HOME=str(home), INGEST_STACK_CACHE=str(cache_dir()))
    proc = subprocess.Popen(["bash", "-e", "-c", block], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"block did not finish in {BLOCK_TIMEOUT_S}s:\n{output[-4000:]}")
    finally:
        _cleanup(proc.pid, env)
    assert proc.returncode == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    if "binance_ingest_records_produced" in block:
        produced = re.findall(r'^binance_ingest_records_produced_total\{topic="([^"]+)"\} ([0-9.e+]+)$', output,
                              re.MULTILINE)
        assert any(topic.endswith(".miniticker") and float(n) > 0 for topic, n in produced), output[-4000:]
        assert re.search(r'"ready":\s*true', output), output[-4000:]


def _cleanup(pgid: int, env: dict[str, str]) -> None:
    """A failed block must not leave its background jobs or its stack running."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    subprocess.run([str(ROOT / ".venv/bin/ingest"), "stack", "down"], env=env, cwd=ROOT, capture_output=True,
                   timeout=120)
