"""One settings object for the worker.

Every option has exactly one definition here: its flag, its environment variable, its default and a doc
line. The command line, the Helm chart's env vars and docs/configuration.md are all derived from this
list, so they cannot drift apart. Unknown ``INGEST_*`` variables and contradictory options are errors:
a typo in a deployment must fail at start, not run with a silent default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting is missing, malformed or contradicts another; the message is one line for the user."""


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class Option:
    """How one setting is spelled on the command line and in the environment."""

    name: str
    default: Any
    doc: str
    parse: Callable[[str], Any] = str
    env: str = ""
    choices: tuple[str, ...] = ()
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return self.env or "INGEST_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("streams", ["!miniTicker@arr"], "Comma list of streams: '!miniTicker@arr', '<symbol>@miniTicker', "
           "'<symbol>@ticker', or a pattern '@ticker' / '@miniTicker' meaning every TRADING symbol (narrowed by "
           "--quote-assets). '!ticker@arr' (retired by Binance on 2026-03-26) is served as '@ticker' over every "
           "TRADING symbol unless --literal-ticker-arr.", _csv),
    Option("literal_ticker_arr", False, "Subscribe '!ticker@arr' as it is instead of serving it per symbol: only "
           "for an exchange or a replay that still sends it (Binance accepts it but sends nothing since "
           "2026-03-26).", _bool),
    Option("quote_assets", [], "Comma list of quote assets (e.g. USDT) that narrow '@ticker'/'@miniTicker' "
           "patterns; empty means all.", _csv),
    Option("ws_url", "wss://stream.binance.com:9443", "Base URL of Binance's WebSocket market streams."),
    Option("rest_url", "https://api.binance.com", "Base URL of Binance's REST API (exchangeInfo, ticker/24hr)."),
    Option("combined", True, "Use combined-stream URLs (/stream?streams=...) instead of raw (/ws/...).", _bool),
    Option("bootstrap_servers", "", "Kafka bootstrap servers (host:port,...). Required for 'run'.",
           env="KAFKA_BOOTSTRAP_SERVERS"),
    Option("schema_registry_url", "", "Schema Registry URL speaking the Confluent API. Required for 'run'.",
           env="SCHEMA_REGISTRY_URL"),
    Option("schema_registry_user_info", "", "Registry basic auth as 'user:password'.",
           secret=True),
    Option("topic_prefix", "binance.spot", "Prefix of every topic: <prefix>.miniticker, .ticker, .symbols, "
           ".deadletter."),
    Option("topic_partitions", 6, "Partitions of the ticker topics when the worker creates them.", int),
    Option("topic_replication_factor", -1, "Replication factor of created topics; -1 = broker default.", int),
    Option("ticker_retention_ms", 7 * 24 * 3600 * 1000, "retention.ms of the ticker topics it creates.", int),
    Option("metrics_host", "0.0.0.0", "Address the /metrics, /healthz and /readyz server binds to."),
    Option("metrics_port", 9108, "Port of the metrics server; 0 picks a free port and logs it.", int),
    Option("max_streams_per_connection", 1024, "Streams per WebSocket connection (Binance allows 1024).", int),
    Option("max_connections", 5, "WebSocket connections this worker may hold at once; our own caution (Binance "
           "documents no per-IP limit on open connections, only on attempts), one is kept free for rotations.",
           int),
    Option("exchange_info_refresh_s", 600.0, "Seconds between exchangeInfo refreshes (listings/delistings).",
           float),
    Option("snapshot_on_connect", True, "Produce a ticker/24hr REST snapshot after every (re)connect.", _bool),
    Option("stale_timeout_s", 0.0, "Reconnect when no frame arrives for this long; 0 = automatic "
           "(5 x the stream's push interval, at least 10 s).", float),
    Option("rotate_after_s", 23 * 3600.0, "Replace a connection (make before break) after this long; Binance "
           "closes connections at 24 h.", float),
    Option("backoff_initial_s", 1.0, "First reconnect delay (exponential backoff with full jitter).", float),
    Option("backoff_max_s", 5.0, "Cap of the reconnect delay after ordinary closes and errors (Binance's "
           "reference: reconnect within 1-5 s).", float),
    Option("backoff_slow_s", 60.0, "Cap of the delay after the exchange says slow down (close 1008, HTTP "
           "429/403/418 on the handshake without Retry-After): drawn from [1/2, 1] x this.", float),
    Option("location_refused_retry_s", 300.0, "Seconds between attempts while Binance refuses this location "
           "(HTTP 451 on the WebSocket handshake or REST): slow on purpose, a restricted region does not change "
           "by retrying.", float),
    Option("max_connection_attempts", 300, "WebSocket connection attempts allowed per "
           "--connection-attempt-window-s (Binance: 300 per 5 minutes per IP); over it the worker waits. "
           "Replicas sharing an egress IP should split it.", int),
    Option("connection_attempt_window_s", 300.0, "Sliding window of --max-connection-attempts, in seconds.",
           float),
    Option("buffer_max_messages", 100_000, "Records the producer may hold unacknowledged before the buffer "
           "policy applies.", int),
    Option("buffer_policy", "block", "What to do when the producer buffer is full.",
           choices=("block", "drop_newest", "drop_oldest")),
    Option("max_frame_bytes", 4 * 1024 * 1024, "Frames larger than this go to the dead-letter topic.", int),
    Option("shutdown_grace_s", 10.0, "Seconds to flush the producer after SIGTERM before exiting.", float),
    Option("kafka_properties_file", "", "A Java-style .properties file of librdkafka settings (SASL/TLS...)."),
    Option("coordination", "off", "Scale-out: 'kafka' makes replicas join one consumer group on the coordination "
           "topic and stream only the shards (its partitions) they are assigned; 'off' streams everything.",
           choices=("off", "kafka")),
    Option("coordination_group", "", "Consumer group of the replicas; empty = the coordination topic's name "
           "(<prefix>.coordination)."),
    Option("coordination_shards", 12, "Partitions (= shards) of the coordination topic when the worker creates "
           "it; an existing topic's partition count wins, so every replica agrees.", int),
    Option("coordination_session_timeout_s", 10.0, "Group session timeout: a replica that stops heartbeating "
           "(kill -9, frozen node) loses its shards after this long.", float),
    Option("log_format", "auto", "Log format: json lines, human text, or auto (text on a terminal).",
           choices=("auto", "json", "text")),
    Option("log_level", "INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
)

_BY_NAME = {opt.name: opt for opt in OPTIONS}
KAFKA_ENV_PREFIX = "INGEST_KAFKA_"
"""``INGEST_KAFKA_SASL_MECHANISM=SCRAM-SHA-512`` becomes librdkafka's ``sasl.mechanism``."""


@dataclass(frozen=True)
class Settings:
    """All worker settings, resolved from defaults < environment < command line."""

    streams: list[str] = field(default_factory=lambda: ["!miniTicker@arr"])
    quote_assets: list[str] = field(default_factory=list)
    literal_ticker_arr: bool = False
    ws_url: str = "wss://stream.binance.com:9443"
    rest_url: str = "https://api.binance.com"
    combined: bool = True
    bootstrap_servers: str = ""
    schema_registry_url: str = ""
    schema_registry_user_info: str = ""
    topic_prefix: str = "binance.spot"
    topic_partitions: int = 6
    topic_replication_factor: int = -1
    ticker_retention_ms: int = 7 * 24 * 3600 * 1000
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9108
    max_streams_per_connection: int = 1024
    max_connections: int = 5
    exchange_info_refresh_s: float = 600.0
    snapshot_on_connect: bool = True
    stale_timeout_s: float = 0.0
    rotate_after_s: float = 23 * 3600.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 5.0
    backoff_slow_s: float = 60.0
    location_refused_retry_s: float = 300.0
    max_connection_attempts: int = 300
    connection_attempt_window_s: float = 300.0
    buffer_max_messages: int = 100_000
    buffer_policy: str = "block"
    max_frame_bytes: int = 4 * 1024 * 1024
    shutdown_grace_s: float = 10.0
    kafka_properties_file: str = ""
    coordination: str = "off"
    coordination_group: str = ""
    coordination_shards: int = 12
    coordination_session_timeout_s: float = 10.0
    log_format: str = "auto"
    log_level: str = "INFO"
    kafka_properties: dict[str, str] = field(default_factory=dict)

    def topic(self, kind: str) -> str:
        """Topic name for ``miniticker``, ``ticker``, ``symbols``, ``deadletter`` or ``coordination``."""
        return f"{self.topic_prefix}.{kind}"

    @property
    def group_id(self) -> str:
        """Consumer group of coordinated replicas."""
        return self.coordination_group or self.topic("coordination")

    def redacted(self) -> dict[str, Any]:
        """Settings safe to log: secrets and every Kafka property that looks secret are masked."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            opt = _BY_NAME.get(f.name)
            if opt is not None and opt.secret and value:
                value = "***"
            out[f.name] = value
        out["kafka_properties"] = {
            k: ("***" if _looks_secret(k) else v) for k, v in self.kafka_properties.items()
        }
        return out


def _looks_secret(key: str) -> bool:
    return any(word in key for word in ("password", "secret", "key.pem", "token", "sasl.jaas"))


def add_arguments(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    """Add one flag per option (or per named option); defaults stay None so env vars can fill in."""
    for opt in OPTIONS:
        if names is not None and opt.name not in names:
            continue
        kwargs: dict[str, Any] = {"dest": opt.name, "default": None,
                                  "help": f"{opt.doc} [env {opt.env_var}; default {opt.default!r}]"}
        if opt.choices:
            kwargs["choices"] = opt.choices
        parser.add_argument(opt.flag, **kwargs)


def env_vars() -> list[str]:
    """Every environment variable the worker reads by name (used by the Helm chart test)."""
    return [opt.env_var for opt in OPTIONS]


def _convert(opt: Option, raw: Any, origin: str) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        value = opt.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{origin}: invalid value {raw!r} ({exc})") from None
    if opt.choices and value not in opt.choices:
        raise ConfigError(f"{origin}: {value!r} is not one of {', '.join(opt.choices)}")
    return value


def read_properties(path: Path) -> dict[str, str]:
    """Parse a Java-style properties file (``key=value``, ``#`` comments) into librdkafka settings."""
    props: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"kafka properties file {path}: {exc.strerror}") from None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "!")):
            continue
        key, sep, value = stripped.partition("=")
        if not sep:
            raise ConfigError(f"kafka properties file {path}:{number}: expected key=value")
        props[key.strip()] = value.strip()
    return props


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings: defaults, then environment, then flags; then check them as a whole."""
    environ = os.environ if environ is None else environ
    known_env = set(env_vars())
    unknown = sorted(
        k for k in environ
        if k.startswith("INGEST_") and k not in known_env and not k.startswith(KAFKA_ENV_PREFIX)
    )
    if unknown:
        raise ConfigError(f"unknown environment variable {unknown[0]} (see 'ingest run --help')")

    values: dict[str, Any] = {}
    for opt in OPTIONS:
        value: Any = opt.default
        if opt.env_var in environ:
            value = _convert(opt, environ[opt.env_var], opt.env_var)
        cli_value = getattr(args, opt.name, None) if args is not None else None
        if cli_value is not None:
            value = _convert(opt, cli_value, opt.flag)
        values[opt.name] = value

    kafka_props: dict[str, str] = {}
    if values["kafka_properties_file"]:
        kafka_props.update(read_properties(Path(values["kafka_properties_file"])))
    for key, raw in environ.items():
        if key.startswith(KAFKA_ENV_PREFIX) and key not in known_env:
            kafka_props[key[len(KAFKA_ENV_PREFIX):].lower().replace("_", ".")] = raw
    values["kafka_properties"] = kafka_props
    settings = Settings(**values)
    validate(settings)
    return settings


_OWNED_KAFKA_KEYS = {"enable.idempotence", "acks", "partitioner", "bootstrap.servers"}


def validate(s: Settings) -> None:
    """Reject contradictory or impossible combinations with a one-line reason."""
    if not s.streams:
        raise ConfigError("--streams: at least one stream is required")
    if not 1 <= s.max_streams_per_connection <= 1024:
        raise ConfigError("--max-streams-per-connection must be between 1 and 1024 (Binance's limit)")
    if s.max_connections < 1:
        raise ConfigError("--max-connections must be at least 1")
    if s.backoff_initial_s <= 0 or s.backoff_max_s < s.backoff_initial_s:
        raise ConfigError("--backoff-max-s must be >= --backoff-initial-s > 0")
    if s.backoff_slow_s < s.backoff_max_s:
        raise ConfigError("--backoff-slow-s must be >= --backoff-max-s (the exchange's slow-down signals never "
                          "shorten the wait)")
    if s.location_refused_retry_s <= 0:
        raise ConfigError("--location-refused-retry-s must be positive")
    if s.max_connection_attempts < 1 or s.connection_attempt_window_s <= 0:
        raise ConfigError("--max-connection-attempts must be at least 1 per positive --connection-attempt-window-s")
    if s.topic_partitions < 1:
        raise ConfigError("--topic-partitions must be at least 1")
    if s.buffer_max_messages < 1:
        raise ConfigError("--buffer-max-messages must be at least 1")
    if s.rotate_after_s <= 0:
        raise ConfigError("--rotate-after-s must be positive")
    if not 0 <= s.metrics_port <= 65535:
        raise ConfigError("--metrics-port must be a port number (0 picks a free one)")
    if s.coordination == "kafka" and not s.combined:
        raise ConfigError("--coordination kafka needs combined streams (--combined true): shard ownership is "
                          "decided per frame from the stream name that only combined frames carry")
    if s.coordination_shards < 1:
        raise ConfigError("--coordination-shards must be at least 1")
    if not 6.0 <= s.coordination_session_timeout_s <= 300.0:
        raise ConfigError("--coordination-session-timeout-s must be between 6 and 300 (Kafka's group limits)")
    owned = sorted(_OWNED_KAFKA_KEYS & set(s.kafka_properties))
    if owned:
        raise ConfigError(f"Kafka property {owned[0]} is set by the worker itself and cannot be overridden")
    if s.quote_assets and not any(st.startswith("@") for st in s.streams):
        raise ConfigError("--quote-assets only narrows '@ticker'/'@miniTicker' patterns; none given in --streams")


def require_kafka(s: Settings) -> None:
    """Commands that talk to Kafka and the registry need both addresses."""
    if not s.bootstrap_servers:
        raise ConfigError("Kafka bootstrap servers missing: set --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS")
    if not s.schema_registry_url:
        raise ConfigError("Schema Registry URL missing: set --schema-registry-url or SCHEMA_REGISTRY_URL")


def markdown() -> str:
    """docs/configuration.md, generated from OPTIONS (a unit test fails when the file is stale)."""
    lines = [
        "# Configuration",
        "",
        "Generated from `ingest/config.py` by `python -m ingest.config > docs/configuration.md`; do not edit.",
        "",
        "Every option of `ingest run` has a flag and an environment variable; flags win over the environment,",
        "the environment over defaults. Unknown `INGEST_*` variables are an error at start.",
        "",
        "| flag | environment | default | meaning |",
        "|---|---|---|---|",
    ]
    for opt in OPTIONS:
        default = ",".join(opt.default) if isinstance(opt.default, list) else opt.default
        choices = f" One of: {', '.join(opt.choices)}." if opt.choices else ""
        lines.append(f"| `{opt.flag}` | `{opt.env_var}` | `{default}` | {opt.doc}{choices} |")
    lines += [
        "",
        "## Kafka client properties",
        "",
        f"Any librdkafka property passes through as `{KAFKA_ENV_PREFIX}<NAME>` (upper case, dots as underscores:",
        "`INGEST_KAFKA_SASL_MECHANISM=SCRAM-SHA-512` sets `sasl.mechanism`) or from the Java-style file given by",
        "`--kafka-properties-file`; the environment wins over the file. The worker owns "
        + ", ".join(f"`{k}`" for k in sorted(_OWNED_KAFKA_KEYS)) + ": setting them is an error.",
        "Secrets (`*password*`, `*secret*`, JAAS config, registry user info) are masked in logs.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
