"""``ingest topics seed``: create/check the topics and publish exchangeInfo's symbols, then exit.

The same steps run at every worker start; this command exists for CI/CD (the Helm pre-install hook), so
topics exist with the right configs before any worker produces.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from confluent_kafka import KafkaException

from ingest import avro
from ingest import config as config_mod
from ingest.binance.rest import RestClient, RestError
from ingest.config import ConfigError
from ingest.kafka.producer import KafkaSink
from ingest.kafka.topics import KnownSymbols, admin_client, publish_symbols, topics_or_config_error
from ingest.logs import setup_logging
from ingest.worker import probe_registry

log = logging.getLogger("ingest.topics")

OPTIONS = ("bootstrap_servers", "schema_registry_url", "schema_registry_user_info", "rest_url", "topic_prefix",
           "topic_partitions", "topic_replication_factor", "ticker_retention_ms", "kafka_properties_file",
           "log_format", "log_level")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("seed",))
    parser.add_argument("--strict", action="store_true", help="exit 1 when an existing topic's config differs")
    config_mod.add_arguments(parser, OPTIONS)


def main(args: argparse.Namespace) -> int:
    settings = config_mod.load(args)
    config_mod.require_kafka(settings)
    setup_logging(settings.log_format, settings.log_level)
    return asyncio.run(_seed(settings, args.strict))


async def _seed(settings: config_mod.Settings, strict: bool) -> int:
    # Read-only steps first, so an unreachable Binance or a wrong registry URL changes nothing.
    try:
        info = await RestClient(settings).exchange_info()
    except (RestError, OSError) as exc:
        raise ConfigError(f"Binance REST {settings.rest_url} unreachable ({exc}); nothing was created. Check the "
                          "network and --rest-url") from None
    client = avro.make_client(settings.schema_registry_url, settings.schema_registry_user_info)
    try:
        probe_registry(client, settings.schema_registry_url)
    except Exception as exc:
        if isinstance(exc, ConfigError) or not avro.is_retryable(exc):
            raise
        raise ConfigError(f"Schema Registry {settings.schema_registry_url} unreachable ({type(exc).__name__}); "
                          "nothing was created") from None
    try:
        warnings = topics_or_config_error(admin_client(settings), settings, timeout_s=30.0)
    except KafkaException as exc:  # unreachable (refusals are ConfigErrors already): one line, nothing created
        error = exc.args[0] if exc.args else exc
        reason = error.str() if hasattr(error, "str") else str(error)
        raise ConfigError(f"Kafka {settings.bootstrap_servers} unreachable ({reason}); nothing was created. Check "
                          "--bootstrap-servers / KAFKA_BOOTSTRAP_SERVERS") from None
    encoders = avro.register_schemas(client, {"symbols": settings.topic("symbols")})
    known = KnownSymbols()
    changes = known.update(info)
    sink = KafkaSink(settings)
    await publish_symbols(sink, encoders["symbols"], settings, known, changes.changed)
    remaining = sink.flush(60)
    print(f"topics ready under prefix {settings.topic_prefix!r}; {len(changes.changed)} symbols published "
          f"to {settings.topic('symbols')}; {len(warnings)} config warnings")
    for warning in warnings:
        print(f"warning: {warning}")
    if remaining:
        print(f"error: {remaining} symbol records not acknowledged")
        return 1
    return 1 if strict and warnings else 0
