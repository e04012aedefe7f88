"""Topic seeding from exchangeInfo: the topics of DESIGN §4, the compacted symbols topic, known symbols.

Topics are created with explicit configs (the ticker topics delete with a retention, the symbols topic is
compacted). Existing topics are never altered behind an operator's back: a mismatch is logged as a
warning naming the setting, because changing partitions of a keyed topic moves keys between partitions.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from ingest import metrics
from ingest.avro import Encoder
from ingest.binance.events import RecordError, Reject, dead_letter_headers, symbol_info_value
from ingest.config import ConfigError, Settings
from ingest.kafka.producer import KafkaSink
from ingest.logs import librdkafka_logger

log = logging.getLogger(__name__)

KINDS = ("miniticker", "ticker", "symbols", "deadletter")


def topic_specs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """topic -> (partitions, configs) for every topic the worker writes."""
    retention = str(settings.ticker_retention_ms)
    ticker_cfg = {"cleanup.policy": "delete", "retention.ms": retention}
    return {
        settings.topic("miniticker"): (settings.topic_partitions, ticker_cfg),
        settings.topic("ticker"): (settings.topic_partitions, ticker_cfg),
        # Compacted: the latest SymbolInfo per symbol is the table of the exchange's symbols.
        settings.topic("symbols"): (settings.topic_partitions, {"cleanup.policy": "compact"}),
        settings.topic("deadletter"): (1, {"cleanup.policy": "delete", "retention.ms": retention}),
    }


def kafka_unreachable(exc: BaseException) -> bool:
    """Worth retrying at start: the cluster is unreachable or busy, not refusing us (auth, bad config)."""
    if not isinstance(exc, KafkaException) or not exc.args:
        return False
    err = exc.args[0]
    return bool(err.retriable()) or err.code() in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
                                                   KafkaError._ALL_BROKERS_DOWN)


def client_config(settings: Settings) -> dict[str, Any]:
    """Connection settings (bootstrap, SASL, TLS...) for clients that are not the producer: admin, group member."""
    # Producer-only keys stay with the producer: ``enable.gapless.guarantee`` would even make librdkafka refuse
    # to create these clients (it requires idempotence, which only the producer has).
    conf: dict[str, Any] = {k: v for k, v in settings.kafka_properties.items()
            if not k.startswith(("linger", "batch", "compression", "enable.gapless"))}
    conf["bootstrap.servers"] = settings.bootstrap_servers
    conf["logger"] = librdkafka_logger()  # librdkafka's lines through our handler (structured, rate-limited)
    return conf


def admin_client(settings: Settings) -> AdminClient:
    """An AdminClient whose librdkafka log lines reach our logger while it lives.

    With ``logger=``, librdkafka hands its lines over only when the client is polled, and nothing polls an admin
    client that blocks in a metadata request: an authentication or TLS failure would stay unseen. A daemon
    thread polls it until the client is garbage (it holds only a weak reference between polls).
    """
    admin = AdminClient(client_config(settings))
    threading.Thread(target=_serve_admin_logs, args=(weakref.ref(admin),), name="admin-logs", daemon=True).start()
    return admin


def _serve_admin_logs(ref: weakref.ReferenceType[AdminClient]) -> None:
    while (admin := ref()) is not None:
        admin.poll(0.5)
        del admin


def topics_or_config_error(admin: AdminClient, settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """``ensure_topics``, with a refusal that retrying cannot fix (replication factor above the broker count,
    a policy violation, no authorization) turned into one line for the user; outages are raised as they are."""
    try:
        return ensure_topics(admin, settings, timeout_s)
    except KafkaException as exc:
        if kafka_unreachable(exc):
            raise
        error = exc.args[0] if exc.args else exc
        reason = error.str() if hasattr(error, "str") else str(error)
        raise ConfigError(f"Kafka {settings.bootstrap_servers} refused the topics under {settings.topic_prefix!r}: "
                          f"{reason}") from None


def ensure_topics(admin: AdminClient, settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; check existing ones and return warnings about mismatches."""
    specs = topic_specs(settings)
    existing = admin.list_topics(timeout=timeout_s).topics
    to_create = [
        NewTopic(name, num_partitions=parts, replication_factor=settings.topic_replication_factor, config=cfg)
        for name, (parts, cfg) in specs.items() if name not in existing
    ]
    if to_create:
        for name, future in admin.create_topics(to_create, request_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
                log.info("topic created", extra={"topic": name})
            except KafkaException as exc:
                if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: another replica won the race
                    raise
    warnings: list[str] = []
    for name, (parts, cfg) in specs.items():
        if name not in existing:
            continue
        have = len(existing[name].partitions)
        if have != parts:
            warnings.append(f"topic {name} has {have} partitions, configured {parts}")
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        actual = admin.describe_configs([resource])[resource].result(timeout=timeout_s)
        for key, want in cfg.items():
            got = actual[key].value if key in actual else None
            if got != want:
                warnings.append(f"topic {name}: {key}={got}, configured {want}")
    for warning in warnings:
        log.warning("topic mismatch", extra={"reason": warning})
    return warnings


@dataclass
class SymbolChanges:
    """What one exchangeInfo refresh changed."""

    listed: list[str] = field(default_factory=list)
    delisted: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


@dataclass
class KnownSymbols:
    """The exchange's symbols as last seen, with first-seen times; the source of per-symbol subscriptions."""

    symbols: dict[str, dict[str, Any]] = field(default_factory=dict)
    first_seen: dict[str, int] = field(default_factory=dict)
    server_time: int = 0

    def update(self, exchange_info: dict[str, Any]) -> SymbolChanges:
        """Apply a new exchangeInfo; a listing is a new or newly TRADING symbol, a delisting the reverse."""
        server_time = int(exchange_info.get("serverTime", 0))
        fresh = {s["symbol"]: s for s in exchange_info.get("symbols", [])
                 if isinstance(s, dict) and isinstance(s.get("symbol"), str)}
        changes = SymbolChanges()
        first_load = not self.symbols
        for name, sym in fresh.items():
            self.first_seen.setdefault(name, server_time)
            old = self.symbols.get(name)
            if old == sym:
                continue
            changes.changed.append(name)
            if first_load:
                continue
            was_trading = old is not None and old.get("status") == "TRADING"
            if sym.get("status") == "TRADING" and not was_trading:
                changes.listed.append(name)
            elif sym.get("status") != "TRADING" and was_trading:
                changes.delisted.append(name)
        for name, old in self.symbols.items():
            if name not in fresh and old.get("status") != "DELISTED":
                changes.changed.append(name)
                if old.get("status") == "TRADING":
                    changes.delisted.append(name)
        gone = {name: dict(old, status="DELISTED") for name, old in self.symbols.items() if name not in fresh}
        self.symbols = {**fresh, **gone}
        self.server_time = server_time
        metrics.SYMBOLS_LISTED.inc(len(changes.listed))
        metrics.SYMBOLS_DELISTED.inc(len(changes.delisted))
        by_status: dict[str, int] = {}
        for s in self.symbols.values():
            by_status[s.get("status", "")] = by_status.get(s.get("status", ""), 0) + 1
        for status, count in by_status.items():
            metrics.SYMBOLS_KNOWN.labels(status).set(count)
        return changes


async def publish_symbols(sink: KafkaSink, encoder: Encoder, settings: Settings, known: KnownSymbols,
                          names: Iterable[str]) -> int:
    """SymbolInfo records to the compacted symbols topic, keyed by symbol; malformed entries dead-lettered."""
    now = time.time()
    topic, deadletter = settings.topic("symbols"), settings.topic("deadletter")
    published = 0
    for name in names:
        entry = known.symbols[name]
        try:
            value = symbol_info_value(entry, first_seen_ms=known.first_seen.get(name, known.server_time),
                                      last_seen_ms=known.server_time, ingest_time_us=int(now * 1_000_000))
        except RecordError as exc:
            metrics.DEADLETTER.labels(exc.reason).inc()
            reject = Reject(exc.reason, "rest:exchangeInfo", orjson.dumps(entry), name, exc.detail)
            await sink.produce(deadletter, b"rest:exchangeInfo", reject.raw, int(now * 1000),
                               headers=dead_letter_headers(reject, int(now * 1_000_000)))
            continue
        await sink.produce(topic, name.encode(), encoder.encode(value), int(now * 1000))
        published += 1
    sink.poll()
    return published
