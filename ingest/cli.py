"""The ``ingest`` command: one entry point, one subcommand per job.

Each subcommand lives in the module that owns its concern; this file only wires argparse to them and
turns a ``ConfigError`` into a one-line message with exit code 2, so bad configuration never shows a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from ingest import __version__
from ingest.config import ConfigError

# subcommand -> (module owning it, help line). The module provides add_arguments(parser) and main(args).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("ingest.worker", "run the connector: Binance streams -> Avro -> Kafka"),
    "sim": ("ingest.sim.cli", "run the Binance exchange simulator (WebSocket + REST, fault injection)"),
    "stack": ("ingest.devstack.cli", "start/stop a local Kafka + Schema Registry from Maven Central jars"),
    "demo": ("ingest.demo", "stack + simulator + worker + a live view of what lands in Kafka"),
    "topics": ("ingest.kafka.topics_cli", "topic seeding from exchangeInfo (for CI/CD)"),
    "schemas": ("ingest.schemas_cli", "register schemas or check their compatibility with the registry"),
    "check": ("ingest.check", "dry run of a configuration: settings, Kafka, registry, Binance REST, streams"),
    "tail": ("ingest.tail", "print a topic's records decoded through the registry (JSON lines or a table)"),
}


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line naming the (sub)command and where its usage is.

    argparse's default prints the whole usage first (30 lines for ``ingest run``), which buries the one line
    that matters; ``--help`` still shows everything.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int | None]]]:
    """Build the parser: one subparser per entry of SUBCOMMANDS, arguments defined by the owning module."""
    parser, mains, _ = _build()
    return parser, mains


def _build(only: str | None = None) -> tuple[
    argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int | None]], dict[str, argparse.ArgumentParser]
]:
    """The parser; with ``only``, just that subcommand's module is imported (imports follow use: ``ingest run``
    loads nothing of the simulator, the local stack or the demo). Every subcommand is still listed by name."""
    parser = OneLineParser(prog="ingest", description="Binance spot market data -> Avro -> Kafka connector.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mains: dict[str, Callable[[argparse.Namespace], int | None]] = {}
    parsers: dict[str, argparse.ArgumentParser] = {}
    for name, (module_name, help_line) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_line, description=help_line)
        parsers[name] = sub_parser
        if only is None or name == only:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            mains[name] = module.main
    return parser, mains, parsers


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option), if it is one."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in SUBCOMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, mains, parsers = _build(_command(argv))
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the subcommand's parser, so the message names 'ingest run', not 'ingest'
        parsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(mains[args.command](args) or 0)
    except ConfigError as exc:
        print(f"ingest {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
