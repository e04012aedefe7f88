"""Peers doing the same job on the same simulator stream, and, where one cannot run here, exactly why.

Checked on this machine (2026-11): neither peer can run the comparable job, for reasons below; ``probe``
re-checks what can be checked at run time (is cryptofeed installed in its own venv, which Binance
channels does it offer), so the report states facts of the run, not of an old note.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

CRYPTOFEED_VENV = Path.home() / ".cache" / "binance-ingest" / "cryptofeed-venv"


@dataclass
class Peer:
    name: str
    ran: bool
    reason: str


def redpanda_connect() -> Peer:
    return Peer("Redpanda Connect (websocket -> schema_registry_encode -> kafka_franz)", False,
                "not built: the module github.com/redpanda-data/connect/v4, which holds kafka_franz and "
                "schema_registry_encode, is marked not-to-use in this workplace's package list (not an "
                "open-source licence); the open core github.com/redpanda-data/benthos/v4 (v4.60.0 is served) "
                "has neither a Kafka output nor a Schema Registry encoder, so it cannot do the same job.")


def cryptofeed() -> Peer:
    python = CRYPTOFEED_VENV / "bin" / "python"
    if not python.exists():
        return Peer("cryptofeed Kafka backend", False,
                    f"not installed (expected a separate venv at {CRYPTOFEED_VENV}: "
                    f"python3 -m venv {CRYPTOFEED_VENV} && {CRYPTOFEED_VENV}/bin/pip install cryptofeed aiokafka)")
    probe = ("import importlib.metadata as m; from cryptofeed.exchanges import Binance; "
             "print(m.version('cryptofeed'), Binance.websocket_channels.get('ticker'), "
             "sorted(Binance.websocket_channels.values()))")
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return Peer("cryptofeed Kafka backend", False, f"installed but does not import: {out.stderr[-300:]}")
    version, ticker_channel, channels = out.stdout.strip().split(" ", 2)
    return Peer(f"cryptofeed {version} Kafka backend", False,
                f"installed, but it cannot consume this stream: its Binance TICKER channel is '{ticker_channel}' "
                f"(best bid/ask) and its Binance channels are {channels}; it has no 24hr ticker or mini-ticker "
                "channel (!ticker@arr, !miniTicker@arr), which is what the simulator generates and what this job "
                "ingests. Its Kafka backend also writes JSON through aiokafka, with no Avro or Schema Registry, "
                "so even a bookTicker run would be a different job.")


def probe() -> list[Peer]:
    return [redpanda_connect(), cryptofeed()]
