"""``ingest stack up|down|status``: a local Kafka + Schema Registry for development, tests and the demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ingest.config import ConfigError
from ingest.devstack.jars import APICURIO_VERSION, KAFKA_VERSION, StackError
from ingest.devstack.stack import LocalStack, PortTakenError


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "binance-ingest" / "stack"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("INGEST_STACK_DIR", default_state_dir())),
                        help="where pids, logs and Kafka data live [env INGEST_STACK_DIR]")
    parser.add_argument("--kafka-port", type=int, default=0, help="broker port (0 = a free one)")
    parser.add_argument("--registry-port", type=int, default=0, help="registry port (0 = a free one)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")


def main(args: argparse.Namespace) -> int:
    for flag, port in (("--kafka-port", args.kafka_port), ("--registry-port", args.registry_port)):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{flag} must be a port number (0 picks a free one)")
    if args.timeout <= 0:
        raise ConfigError("--timeout must be positive")
    stack = LocalStack(args.state_dir)
    try:
        if args.action == "up":
            started = time.monotonic()
            stack.up(kafka_port=args.kafka_port, registry_port=args.registry_port, timeout=args.timeout)
            print(f"# Kafka {KAFKA_VERSION} + Apicurio Registry {APICURIO_VERSION} ready in "
                  f"{time.monotonic() - started:.1f}s; logs in {stack.state_dir / 'logs'}", file=sys.stderr)
            sys.stdout.write(stack.env_lines())
        elif args.action == "down":
            stopped = stack.down()
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"), file=sys.stderr)
        else:
            status = stack.status()
            print(json.dumps(status, indent=2))
            return 0 if status["kafka"]["running"] and status["registry"]["running"] else 3
    except StackError as exc:
        print(f"ingest stack {args.action}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, PortTakenError) else 1  # a port in use is the user's setting to change
    return 0
