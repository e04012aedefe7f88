"""The `ingest` command: every subcommand is wired, and bad configuration is one line with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ingest.cli import SUBCOMMANDS, build_parser


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_") and k not in
             ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")}
    return subprocess.run([sys.executable, "-m", "ingest.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**clean, **env})


def test_every_subcommand_is_wired():
    _, mains = build_parser()
    assert set(mains) == set(SUBCOMMANDS)


@pytest.mark.parametrize(("args", "env", "message"), [
    (("run",), {}, "Kafka bootstrap servers missing"),
    (("run", "--max-streams-per-connection", "5000"), {"KAFKA_BOOTSTRAP_SERVERS": "x:1",
                                                       "SCHEMA_REGISTRY_URL": "http://x"}, "1024"),
    (("run",), {"INGEST_STREMS": "!ticker@arr"}, "unknown environment variable INGEST_STREMS"),
    # Checked against librdkafka when the settings load: before the registry or Kafka is contacted (both unreachable).
    (("run",), {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "SCHEMA_REGISTRY_URL": "http://127.0.0.1:9",
                "INGEST_KAFKA_SASL_MECHANIZM": "PLAIN"}, "sasl.mechanizm is not a librdkafka property"),
])
def test_bad_config_fails_at_start_with_one_line(args, env, message):
    result = _run(*args, **env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_ingest_run_imports_nothing_of_the_simulator_stack_or_demo():
    """Imports follow use: 'ingest run' loads no simulator, local stack or demo code. A fresh interpreter runs the
    CLI's main as the console script does ('run --help' exits once the parser is built) and lists sys.modules."""
    probe = ("import contextlib, io, sys\n"
             "from ingest import cli\n"
             "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
             "    cli.main(['run', '--help'])\n"
             "print('\\n'.join(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    imported = set(done.stdout.split())
    assert {"ingest.worker", "ingest.config", "ingest.kafka.producer"} <= imported
    unwanted = sorted(m for m in imported if m.startswith(("ingest.sim", "ingest.devstack", "ingest.demo")))
    assert not unwanted, f"ingest run imports {unwanted}"
