"""``ingest check``: a dry run of a configuration, so a deploy fails in CI instead of in a crash-looping pod.

It takes exactly the options of ``ingest run`` (same flags, same environment variables) and goes through
what the worker's start-up would need, in the same order: the settings, the metrics port, the Kafka client
properties, Kafka itself, the topics, the registry and the compatibility of schemas/*.avsc, Binance's REST
exchangeInfo, and the streams after pattern expansion. Each step prints one line (``ok``, ``warn`` or
``FAIL``) and the steps go on after a failure where they do not depend on it, so one run shows every
problem at once.

It creates and registers nothing: topics are checked with metadata, DescribeConfigs and a validate-only
CreateTopics; schemas with the registry's compatibility test. Exit codes: 0 when ``ingest run`` would start
(warnings allowed), 2 when the configuration itself is wrong (what ``ingest run`` would refuse with exit 2),
1 when something is unreachable or incompatible. check is stricter than run in one place: an existing topic
whose ``cleanup.policy`` differs from what the worker would create fails, because the worker only warns
about it at start while it silently loses data (a compacted ticker topic keeps one record per symbol, a
symbols topic that deletes forgets symbols after retention).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, ClusterMetadata, ConfigResource, NewTopic

from ingest import avro
from ingest import config as config_mod
from ingest.binance import streams as stream_names
from ingest.binance.rest import RestClient, RestError
from ingest.config import ConfigError, Settings
from ingest.kafka.producer import producer_config
from ingest.kafka.topics import client_config, kafka_unreachable, topic_specs

DEFAULT_TIMEOUT_S = 10.0
STREAMS_SHOWN = 20
"""Streams listed by name; a pattern may expand to thousands (``--list-streams`` prints them all)."""
CCOMPAT_PATH = "/apis/ccompat/v7"

_QUIET = logging.getLogger("ingest.check.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
"""librdkafka's own log lines (hundreds per minute while a broker is down) are not part of the report."""


@dataclass
class Report:
    """The report's lines, printed as they are found, and the exit code they add up to."""

    out: TextIO = sys.stdout
    lines: list[tuple[str, str, bool]] = field(default_factory=list)

    def ok(self, what: str, message: str) -> None:
        self._add("ok", what, message, config=False)

    def warn(self, what: str, message: str) -> None:
        self._add("warn", what, message, config=False)

    def fail(self, what: str, message: str, *, config: bool = False) -> None:
        """A failure; ``config`` marks a mistake in the configuration itself (exit 2, like ``ingest run``)."""
        self._add("FAIL", what, message, config=config)

    def detail(self, text: str) -> None:
        print(f"      {text}", file=self.out, flush=True)

    def _add(self, status: str, what: str, message: str, *, config: bool) -> None:
        self.lines.append((status, what, config))
        print(f"{status:<5} {what}: {message}", file=self.out, flush=True)

    @property
    def exit_code(self) -> int:
        failures = [config for status, _, config in self.lines if status == "FAIL"]
        if any(failures):
            return 2
        return 1 if failures else 0

    def summary(self) -> None:
        failed = sum(1 for status, _, _ in self.lines if status == "FAIL")
        count = sum(1 for status, _, _ in self.lines if status == "warn")
        warnings = f"{count} warning{'' if count == 1 else 's'}"
        if failed:
            why = "the worker would refuse this configuration" if self.exit_code == 2 else \
                "the worker would not start (or would wait) until the FAIL lines are fixed"
            print(f"check: {failed} failed, {warnings}: {why} (exit {self.exit_code})", file=self.out, flush=True)
        else:
            print(f"check: the worker would start ({warnings})", file=self.out, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config_mod.add_arguments(parser)
    parser.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"how long each network check may take [default {DEFAULT_TIMEOUT_S}]")
    parser.add_argument("--list-streams", action="store_true",
                        help=f"list every stream it would subscribe (default: the first {STREAMS_SHOWN})")


def main(args: argparse.Namespace) -> int:
    report = Report()
    settings = _settings(args, report)
    if settings is None:
        report.summary()
        return report.exit_code
    run_checks(settings, report, timeout_s=args.timeout_s, list_streams=args.list_streams)
    report.summary()
    return report.exit_code


def run_checks(settings: Settings, report: Report, *, timeout_s: float = DEFAULT_TIMEOUT_S,
               list_streams: bool = False) -> None:
    """Every check after the settings; each one reports and returns what later checks need."""
    _metrics_port(settings, report)
    kafka_conf = _kafka_properties(settings, report)
    if kafka_conf is not None:
        metadata = _kafka(settings, kafka_conf, report, timeout_s)
        if metadata is not None:
            _topics(settings, kafka_conf, metadata, report, timeout_s)
    _registry(settings, report)
    exchange_info = _exchange_info(settings, report, timeout_s)
    _streams(settings, exchange_info, report, list_streams)


# ----- settings --------------------------------------------------------------------------------------------

def _settings(args: argparse.Namespace, report: Report) -> Settings | None:
    """Every option, as ``ingest run`` reads them, plus what run only finds out later (stream names, URLs)."""
    try:
        settings = config_mod.load(args)
        config_mod.require_kafka(settings)
        for name in settings.streams:
            if not stream_names.is_pattern(name):
                stream_names.normalize(name)
        url = urlsplit(settings.schema_registry_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(f"--schema-registry-url {settings.schema_registry_url!r} is not an http(s) URL "
                              f"(e.g. http://localhost:8080{CCOMPAT_PATH})")
        rest = urlsplit(settings.rest_url)
        if rest.scheme not in ("http", "https") or not rest.netloc:
            raise ConfigError(f"--rest-url {settings.rest_url!r} is not an http(s) URL")
    except ConfigError as exc:
        report.fail("settings", str(exc), config=True)
        return None
    report.ok("settings", f"every option valid (streams {','.join(settings.streams)}; "
                          f"topic prefix {settings.topic_prefix})")
    return settings


def _metrics_port(settings: Settings, report: Report) -> None:
    """The metrics server binds first at start; a port in use stops the worker there."""
    where = f"{settings.metrics_host}:{settings.metrics_port}"
    if settings.metrics_port == 0:
        report.ok("metrics port", "0: a free port is picked at start")
        return
    try:
        family = socket.AF_INET6 if ":" in settings.metrics_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the metrics server binds
            sock.bind((settings.metrics_host, settings.metrics_port))
    except OSError as exc:
        report.fail("metrics port", f"cannot bind {where} ({exc.strerror}): choose another --metrics-port "
                                    "(0 picks a free one)", config=True)
        return
    report.ok("metrics port", f"{where} is free")


def _kafka_properties(settings: Settings, report: Report) -> dict[str, Any] | None:
    """librdkafka checks property names and values when a client is built; nothing is sent yet."""
    try:
        Producer({**producer_config(settings), "logger": _QUIET})
        conf = {**client_config(settings), "logger": _QUIET}
        AdminClient(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        report.fail("kafka properties", f"refused by the Kafka client: {_kafka_reason(exc)}", config=True)
        return None
    extra = len(settings.kafka_properties)
    report.ok("kafka properties", f"{extra} user properties accepted by the client" if extra
              else "defaults (no INGEST_KAFKA_* or --kafka-properties-file)")
    return conf


# ----- Kafka -----------------------------------------------------------------------------------------------

def _kafka(settings: Settings, conf: dict[str, Any], report: Report, timeout_s: float) -> ClusterMetadata | None:
    try:
        metadata = AdminClient(conf).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        report.fail("kafka", f"{settings.bootstrap_servers} unreachable within {timeout_s:g} s "
                             f"({_kafka_reason(exc)})")
        return None
    report.ok("kafka", f"{len(metadata.brokers)} broker(s) at {settings.bootstrap_servers}, "
                       f"cluster {metadata.cluster_id}")
    return metadata


def _topics(settings: Settings, conf: dict[str, Any], metadata: ClusterMetadata, report: Report,
            timeout_s: float) -> None:
    """Existing topics against what the worker would create; missing ones through a validate-only create."""
    admin = AdminClient(conf)
    specs = dict(topic_specs(settings))
    if settings.coordination == "kafka":
        specs[settings.topic("coordination")] = (settings.coordination_shards, {"cleanup.policy": "delete"})
    missing: list[NewTopic] = []
    for name, (partitions, configs) in specs.items():
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None:
            missing.append(NewTopic(name, num_partitions=partitions,
                                    replication_factor=settings.topic_replication_factor, config=configs))
            continue
        _existing_topic(admin, name, len(topic.partitions), partitions, configs, settings, report, timeout_s)
    if not missing:
        return
    futures = admin.create_topics(missing, validate_only=True, request_timeout=timeout_s)
    for new in missing:
        what = f"topic {new.topic}"
        try:
            futures[new.topic].result(timeout=timeout_s)
        except KafkaException as exc:  # a refusal (replication factor, policy, ACL) is what run exits 2 for
            report.fail(what, f"missing, and the broker would refuse to create it: {_kafka_reason(exc)}",
                        config=not kafka_unreachable(exc))
            continue
        policy = (new.config or {}).get("cleanup.policy", "delete")
        report.ok(what, f"missing; the worker creates it ({new.num_partitions} partitions, "
                        f"cleanup.policy={policy})")


def _existing_topic(admin: AdminClient, name: str, have: int, partitions: int, configs: dict[str, str],
                    settings: Settings, report: Report, timeout_s: float) -> None:
    what = f"topic {name}"
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    try:
        actual = admin.describe_configs([resource])[resource].result(timeout=timeout_s)
    except KafkaException as exc:
        report.fail(what, f"exists, but its configs cannot be read: {_kafka_reason(exc)}")
        return
    got = {key: (actual[key].value if key in actual else None) for key in configs}
    problems = False
    if got.get("cleanup.policy") != configs["cleanup.policy"]:
        report.fail(what, f"cleanup.policy={got.get('cleanup.policy')}, the worker needs "
                          f"{configs['cleanup.policy']} (delete or recreate the topic)")
        problems = True
    for key, want in configs.items():
        if key != "cleanup.policy" and got[key] != want:
            report.warn(what, f"{key}={got[key]}, configured {want} (the worker does not alter existing topics)")
            problems = True
    if name == settings.topic("coordination"):
        if have != partitions:
            report.warn(what, f"{have} partitions, --coordination-shards is {partitions}: the topic's count wins")
            problems = True
    elif have != partitions:
        report.warn(what, f"{have} partitions, configured {partitions} (keys stay where they are; "
                          "changing partitions of a keyed topic moves symbols)")
        problems = True
    if not problems:
        report.ok(what, f"exists, {have} partitions, cleanup.policy={got['cleanup.policy']}")


def _kafka_reason(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else exc
    text = err.str() if hasattr(err, "str") else str(err)
    return text.strip()[:200] or type(exc).__name__


# ----- registry --------------------------------------------------------------------------------------------

def _registry(settings: Settings, report: Report) -> None:
    """Reach the registry's Confluent API and test every schema against its subject; register nothing."""
    url = settings.schema_registry_url
    topics = {kind: settings.topic(kind) for kind in avro.SCHEMA_FILES}
    try:
        client = avro.make_client(url, settings.schema_registry_user_info)
    except ConfigError as exc:
        report.fail("registry", str(exc), config=True)
        return
    try:
        try:
            subjects = client.get_subjects()
        except Exception as exc:
            _registry_failure(url, exc, report)
            return
        report.ok("registry", f"Confluent API at {url} ({len(subjects)} subjects)")
        try:
            results = avro.check_compatibility(client, topics)
        except Exception as exc:
            report.fail("schemas", f"compatibility test failed: {type(exc).__name__}: {str(exc)[:200]}")
            return
    finally:
        client.close()
    for result in results:
        what = f"schema {result.subject}"
        file = avro.SCHEMA_FILES[result.kind]
        if result.status == "new":
            report.ok(what, f"not registered yet; the worker registers {file}")
        elif result.ok:
            report.ok(what, f"{file} is compatible with the registered latest version")
        else:
            report.fail(what, f"{file} is incompatible with the registered latest version; the worker's "
                              "registration would be refused (see docs/schemas.md)")


def _registry_failure(url: str, exc: Exception, report: Report) -> None:
    status = getattr(exc, "http_status_code", None)
    if status == 404:
        hint = (f" (for Apicurio Registry append {CCOMPAT_PATH})" if CCOMPAT_PATH not in url
                else "")
        report.fail("registry", f"{url} answers 404 to GET /subjects: not a Confluent-API URL{hint}", config=True)
    elif status in (401, 403):
        report.fail("registry", f"{url} refused the credentials (HTTP {status}): check "
                                "--schema-registry-user-info", config=True)
    elif avro.is_retryable(exc):
        report.fail("registry", f"{url} unreachable: {type(exc).__name__}: {str(exc)[:200]}")
    else:
        report.fail("registry", f"{url} did not answer as a Confluent-API registry: {type(exc).__name__}: "
                                f"{str(exc)[:200]}", config=True)


# ----- Binance ---------------------------------------------------------------------------------------------

def _exchange_info(settings: Settings, report: Report, timeout_s: float) -> dict[str, Any] | None:
    client = RestClient(settings, timeout_s=timeout_s, max_attempts=1)
    try:
        info = asyncio.run(client.exchange_info())
    except RestError as exc:
        report.fail("binance REST", f"exchangeInfo from {settings.rest_url} failed: {exc}")
        return None
    symbols = info.get("symbols", []) if isinstance(info, dict) else []
    trading = sum(1 for s in symbols if isinstance(s, dict) and s.get("status") == "TRADING")
    report.ok("binance REST", f"exchangeInfo from {settings.rest_url}: {len(symbols)} symbols, {trading} TRADING")
    return info


def _streams(settings: Settings, exchange_info: dict[str, Any] | None, report: Report, list_all: bool) -> None:
    """The concrete streams, whether they fit the connection budget, and symbols that would never send.

    Like ``ingest run``: a symbol exchangeInfo does not list is a typo and fails (exit 2); a listed symbol that
    is not TRADING is a warning, since it streams again when it trades again."""
    if exchange_info is None and stream_names.needs_exchange_info(settings.streams):
        report.fail("streams", "patterns cannot be expanded without exchangeInfo (see the binance REST line)")
        return
    try:
        streams = stream_names.expand(settings.streams, exchange_info, settings.quote_assets)
        plan = stream_names.plan_connections(streams, settings.max_streams_per_connection, settings.max_connections)
    except ConfigError as exc:
        report.fail("streams", str(exc), config=True)
        return
    replicas = " across the coordinated replicas" if settings.coordination == "kafka" else ""
    report.ok("streams", f"{len(streams)} stream(s) on {len(plan)} connection(s){replicas}")
    shown = streams if list_all else streams[:STREAMS_SHOWN]
    for name in shown:
        report.detail(name)
    if len(shown) < len(streams):
        report.detail(f"... and {len(streams) - len(shown)} more (--list-streams shows them all)")
    if exchange_info is None:
        report.warn("symbols", "not checked: exchangeInfo unavailable")
        return
    _unknown_symbols(streams, exchange_info, report)


def _unknown_symbols(streams: list[str], exchange_info: dict[str, Any], report: Report) -> None:
    """Binance accepts a subscription to any name and then sends nothing: name each such stream."""
    status: Callable[[str], str | None] = {
        str(s.get("symbol")): str(s.get("status")) for s in exchange_info.get("symbols", []) if isinstance(s, dict)
    }.get
    for name in streams:
        if name in stream_names.ALL_MARKET:
            continue
        symbol = stream_names.symbol(name)
        state = status(symbol)
        if state is None:
            report.fail(f"stream {name}", f"symbol {symbol} is not in exchangeInfo: Binance would send nothing "
                                          "on it; check the spelling (the worker refuses it)", config=True)
        elif state != "TRADING":
            report.warn(f"stream {name}", f"symbol {symbol} is {state}, not TRADING: no updates until it trades")
