"""One settings object for the worker, defined once.

Every option is one typed field of :class:`Settings`: its type, default, doc line, choices and whether it is a
secret. The command line flags, the ``INGEST_*`` environment variables, the YAML config file (``--config``),
the Helm chart's rendering of that file and docs/configuration.md are all derived from these fields, so they
cannot drift apart. Precedence: flag > environment > config file > default. Unknown ``INGEST_*`` variables,
unknown config-file keys, unknown librdkafka properties and contradictory options are errors at load, before
anything is created: a typo in a deployment must fail at start, not run with a silent default.

The config file is YAML, not TOML: the Helm chart renders it from its values with ``toYaml``/``toJson``
(YAML is a superset of JSON, so Helm's numbers and lists arrive as typed, without TOML's int/float trap:
Helm holds every number of values.yaml as a float), and operators already write the chart's values in YAML.
The price is PyYAML as a runtime dependency (``yaml.safe_load`` only).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


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


# How a string (flag, env var, or a string in the config file) becomes a value of the field's annotated type.
_PARSERS: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float, "bool": _bool, "list[str]": _csv}


def setting(default: Any, doc: str, *, env: str = "", choices: tuple[str, ...] = (), secret: bool = False) -> Any:
    """A :class:`Settings` field that is a user-facing option; the type comes from the field's annotation."""
    meta = {"doc": doc, "env": env, "choices": choices, "secret": secret}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Option:
    """How one setting is spelled on the command line, in the environment and in the config file (derived)."""

    name: str
    default: Any
    doc: str
    parse: Callable[[str], Any] = str
    env: str = ""
    choices: tuple[str, ...] = ()
    secret: bool = False
    type_name: str = "str"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return self.env or "INGEST_" + self.name.upper()


@dataclass(frozen=True)
class Settings:
    """All worker settings, resolved from defaults < config file < environment < command line."""

    streams: list[str] = setting(  # noqa: RUF009 - setting() returns a dataclasses.field with a default_factory
        ["!miniTicker@arr"],
        "Comma list of streams: '!miniTicker@arr', '<symbol>@miniTicker', "
        "'<symbol>@ticker', or a pattern '@ticker' / '@miniTicker' meaning every TRADING symbol (narrowed by "
        "--quote-assets). '!ticker@arr' (retired by Binance on 2026-03-26) is served as '@ticker' over every "
        "TRADING symbol unless --literal-ticker-arr.",
    )
    literal_ticker_arr: bool = setting(
        False,
        "Subscribe '!ticker@arr' as it is instead of serving it per symbol: only "
        "for an exchange or a replay that still sends it (Binance accepts it but sends nothing since "
        "2026-03-26).",
    )
    quote_assets: list[str] = setting(  # noqa: RUF009 - as above
        [],
        "Comma list of quote assets (e.g. USDT) that narrow '@ticker'/'@miniTicker' "
        "patterns; empty means all.",
    )
    ws_url: str = setting(
        "wss://stream.binance.com:9443",
        "Base URL of Binance's WebSocket market streams.",
    )
    rest_url: str = setting(
        "https://api.binance.com",
        "Base URL of Binance's REST API (exchangeInfo, ticker/24hr).",
    )
    combined: bool = setting(
        True,
        "Use combined-stream URLs (/stream?streams=...) instead of raw (/ws/...).",
    )
    bootstrap_servers: str = setting(
        "",
        "Kafka bootstrap servers (host:port,...). Required for 'run'.",
        env="KAFKA_BOOTSTRAP_SERVERS",
    )
    schema_registry_url: str = setting(
        "",
        "Schema Registry URL speaking the Confluent API. Required for 'run'.",
        env="SCHEMA_REGISTRY_URL",
    )
    schema_registry_user_info: str = setting(
        "",
        "Registry basic auth as 'user:password'.",
        secret=True,
    )
    topic_prefix: str = setting(
        "binance.spot",
        "Prefix of every topic: <prefix>.miniticker, .ticker, .symbols, "
        ".deadletter.",
    )
    topic_partitions: int = setting(
        6,
        "Partitions of the ticker topics when the worker creates them.",
    )
    topic_replication_factor: int = setting(
        -1,
        "Replication factor of created topics; -1 = broker default.",
    )
    ticker_retention_ms: int = setting(
        7 * 24 * 3600 * 1000,
        "retention.ms of the ticker topics it creates.",
    )
    metrics_host: str = setting(
        "0.0.0.0",
        "Address the /metrics, /healthz and /readyz server binds to.",
    )
    metrics_port: int = setting(
        9108,
        "Port of the metrics server; 0 picks a free port and logs it.",
    )
    max_streams_per_connection: int = setting(
        1024,
        "Streams per WebSocket connection (Binance allows 1024).",
    )
    max_connections: int = setting(
        5,
        "WebSocket connections this worker may hold at once; our own caution (Binance "
        "documents no per-IP limit on open connections, only on attempts), one is kept free for rotations.",
    )
    exchange_info_refresh_s: float = setting(
        600.0,
        "Seconds between exchangeInfo refreshes (listings/delistings).",
    )
    snapshot_on_connect: bool = setting(
        True,
        "Produce a ticker/24hr REST snapshot after every (re)connect.",
    )
    stale_timeout_s: float = setting(
        0.0,
        "Reconnect when no frame arrives for this long; 0 = automatic "
        "(5 x the stream's push interval, at least 10 s).",
    )
    rotate_after_s: float = setting(
        23 * 3600.0,
        "Replace a connection (make before break) after this long; Binance "
        "closes connections at 24 h.",
    )
    backoff_initial_s: float = setting(
        1.0,
        "First reconnect delay (exponential backoff with full jitter).",
    )
    backoff_max_s: float = setting(
        5.0,
        "Cap of the reconnect delay after ordinary closes and errors (Binance's "
        "reference: reconnect within 1-5 s).",
    )
    backoff_slow_s: float = setting(
        60.0,
        "Cap of the delay after the exchange says slow down (close 1008, HTTP "
        "429/403/418 on the handshake without Retry-After): drawn from [1/2, 1] x this.",
    )
    location_refused_retry_s: float = setting(
        300.0,
        "Seconds between attempts while Binance refuses this location "
        "(HTTP 451 on the WebSocket handshake or REST): slow on purpose, a restricted region does not change "
        "by retrying.",
    )
    max_connection_attempts: int = setting(
        300,
        "WebSocket connection attempts allowed per "
        "--connection-attempt-window-s (Binance: 300 per 5 minutes per IP); over it the worker waits. "
        "Replicas sharing an egress IP should split it.",
    )
    connection_attempt_window_s: float = setting(
        300.0,
        "Sliding window of --max-connection-attempts, in seconds.",
    )
    buffer_max_messages: int = setting(
        100_000,
        "Records the producer may hold unacknowledged before the buffer "
        "policy applies.",
    )
    buffer_policy: str = setting(
        "block",
        "What to do when the producer buffer is full.",
        choices=("block", "drop_newest", "drop_oldest"),
    )
    max_frame_bytes: int = setting(
        4 * 1024 * 1024,
        "Frames larger than this go to the dead-letter topic.",
    )
    shutdown_grace_s: float = setting(
        10.0,
        "Seconds to flush the producer after SIGTERM before exiting.",
    )
    kafka_properties_file: str = setting(
        "",
        "A Java-style .properties file of librdkafka settings (SASL/TLS...).",
    )
    coordination: str = setting(
        "off",
        "Scale-out: 'kafka' makes replicas join one consumer group on the coordination "
        "topic and stream only the shards (its partitions) they are assigned; 'off' streams everything.",
        choices=("off", "kafka"),
    )
    coordination_group: str = setting(
        "",
        "Consumer group of the replicas; empty = the coordination topic's name "
        "(<prefix>.coordination).",
    )
    coordination_shards: int = setting(
        12,
        "Partitions (= shards) of the coordination topic when the worker creates "
        "it; an existing topic's partition count wins, so every replica agrees.",
    )
    coordination_session_timeout_s: float = setting(
        10.0,
        "Group session timeout: a replica that stops heartbeating "
        "(kill -9, frozen node) loses its shards after this long.",
    )
    log_format: str = setting(
        "auto",
        "Log format: json lines, human text, or auto (text on a terminal).",
        choices=("auto", "json", "text"),
    )
    log_level: str = setting(
        "INFO",
        "Log level.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    kafka_properties: dict[str, str] = field(default_factory=dict)
    """librdkafka passthrough (properties file < config file's ``kafka:`` < ``INGEST_KAFKA_*``), validated."""

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



def _options() -> tuple[Option, ...]:
    """The user-facing options, derived from the fields of :class:`Settings` that :func:`setting` made."""
    options = []
    for f in dataclasses.fields(Settings):
        if "doc" not in f.metadata:
            continue  # kafka_properties: assembled from several sources, not one option
        default: Any = f.default
        if default is dataclasses.MISSING and callable(f.default_factory):
            default = f.default_factory()
        type_name = str(f.type)
        options.append(Option(f.name, default, f.metadata["doc"], _PARSERS[type_name], f.metadata["env"],
                              f.metadata["choices"], f.metadata["secret"], type_name))
    return tuple(options)


OPTIONS: tuple[Option, ...] = _options()
_BY_NAME = {opt.name: opt for opt in OPTIONS}
KAFKA_ENV_PREFIX = "INGEST_KAFKA_"
"""``INGEST_KAFKA_SASL_MECHANISM=SCRAM-SHA-512`` becomes librdkafka's ``sasl.mechanism``."""
OTHER_ENV_VARS = ("INGEST_STACK_DIR", "INGEST_STACK_CACHE", "INGEST_STACK_KAFKA_HEAP", "INGEST_STACK_REGISTRY_HEAP")
"""``INGEST_*`` variables read by other commands (the local stack, ``ingest stack``/``demo``), not worker options:
a shell that exports them for ``ingest stack`` must still be able to run ``ingest run``."""
CONFIG_FILE_KAFKA_SECTION = "kafka"
"""The config file's mapping of librdkafka properties (``kafka: {security.protocol: SASL_SSL}``)."""

# librdkafka properties the worker sets itself, each with the reason a user value is refused (one list: the
# producer takes its values from owned_kafka_properties()).
FIXED_KAFKA_PROPERTIES: dict[str, tuple[Any, str]] = {
    "enable.idempotence": (True, "no duplicates or reordering on retries"),
    "acks": ("all", "required by idempotence"),
    # Same partition for a key as the Java client's default partitioner (murmur2 of the key bytes).
    "partitioner": ("murmur2_random", "keys land on the partitions Java clients pick"),
}
KAFKA_PROPERTIES_FROM_SETTINGS: dict[str, str] = {
    "bootstrap.servers": "bootstrap_servers",
    "queue.buffering.max.messages": "buffer_max_messages",
}
"""librdkafka properties whose value is a worker option: set the option, not the property."""


def owned_kafka_properties(s: Settings) -> dict[str, Any]:
    """The librdkafka settings the worker owns, with their values for these settings."""
    owned = {key: value for key, (value, _) in FIXED_KAFKA_PROPERTIES.items()}
    owned.update({key: getattr(s, name) for key, name in KAFKA_PROPERTIES_FROM_SETTINGS.items()})
    return owned

def _looks_secret(key: str) -> bool:
    return any(word in key for word in ("password", "secret", "key.pem", "token", "sasl.jaas"))


def add_arguments(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    """Add ``--config`` and one flag per option (or per named option); defaults stay None so the environment
    and the config file can fill in."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="YAML file of settings (option names as keys, a 'kafka:' mapping of librdkafka "
                             "properties); flags and INGEST_* variables win over it")
    for opt in OPTIONS:
        if names is not None and opt.name not in names:
            continue
        kwargs: dict[str, Any] = {"dest": opt.name, "default": None,
                                  "help": f"{opt.doc} [env {opt.env_var}; default {opt.default!r}]"}
        if opt.choices:
            kwargs["choices"] = opt.choices
            kwargs["type"] = _choice_case(opt)
        parser.add_argument(opt.flag, **kwargs)


def _choice_case(opt: Option) -> Callable[[str], str]:
    """Choices are matched case-insensitively (``--log-level debug``): no choice differs only by case."""
    by_folded = {choice.casefold(): choice for choice in opt.choices}
    return lambda raw: by_folded.get(raw.strip().casefold(), raw)


def env_vars() -> list[str]:
    """Every environment variable the worker reads by name (used by the Helm chart test)."""
    return [opt.env_var for opt in OPTIONS]


def _convert(opt: Option, raw: Any, origin: str) -> Any:
    """A string is parsed like a flag; a typed value (from the YAML file) must already have the option's type."""
    if isinstance(raw, str):
        try:
            value = opt.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{origin}: invalid value {raw!r} ({exc})") from None
    else:
        value = _typed(opt, raw, origin)
    if opt.choices:
        value = _choice_case(opt)(value)
    if opt.choices and value not in opt.choices:
        raise ConfigError(f"{origin}: {value!r} is not one of {', '.join(opt.choices)}")
    return value


def _typed(opt: Option, raw: object, origin: str) -> Any:
    """Check a YAML value against the option's type (an int is a float; a bool is not an int)."""
    kind = opt.type_name
    if kind == "list[str]" and isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return [item.strip() for item in raw if item.strip()]
    if kind == "bool" and isinstance(raw, bool):
        return raw
    if kind == "int" and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if kind == "int" and isinstance(raw, float) and raw.is_integer():  # Helm renders large ints as floats
        return int(raw)
    if kind == "float" and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    raise ConfigError(f"{origin}: invalid value {raw!r} (expected {kind})")


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


def read_config_file(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The YAML config file as (option values by name, librdkafka properties); unknown keys are errors."""
    import yaml  # only when a file is given: the environment-only path needs no YAML parser

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not YAML ({' '.join(str(exc).split())})") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of option names to values")
    kafka = data.pop(CONFIG_FILE_KAFKA_SECTION, None) or {}
    if not isinstance(kafka, dict):
        raise ConfigError(f"config file {path}: '{CONFIG_FILE_KAFKA_SECTION}' must map librdkafka properties to values")
    unknown = sorted(str(key) for key in data if key not in _BY_NAME)
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting {unknown[0]!r} (option names, e.g. topic_prefix)")
    values = {name: _convert(_BY_NAME[name], raw, f"config file {path}: {name}") for name, raw in data.items()}
    return values, {str(key): _property_text(value) for key, value in kafka.items()}


def _property_text(value: object) -> str:
    """librdkafka takes strings; YAML's true/false/numbers are written the way librdkafka spells them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings: defaults < config file (``--config``) < environment < flags; then check them as a
    whole, the librdkafka properties included, before the caller creates anything."""
    environ = os.environ if environ is None else environ
    known_env = set(env_vars()) | set(OTHER_ENV_VARS)
    unknown = sorted(
        k for k in environ
        if k.startswith("INGEST_") and k not in known_env and not k.startswith(KAFKA_ENV_PREFIX)
    )
    if unknown:
        raise ConfigError(f"unknown environment variable {unknown[0]} (see 'ingest run --help')")

    config_path = getattr(args, "config", None) if args is not None else None
    file_values, file_kafka = read_config_file(Path(config_path)) if config_path else ({}, {})
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        value: Any = file_values.get(opt.name, opt.default)
        if opt.env_var in environ:
            value = _convert(opt, environ[opt.env_var], opt.env_var)
        cli_value = getattr(args, opt.name, None) if args is not None else None
        if cli_value is not None:
            value = _convert(opt, cli_value, opt.flag)
        values[opt.name] = value

    kafka_props: dict[str, str] = {}
    if values["kafka_properties_file"]:
        kafka_props.update(read_properties(Path(values["kafka_properties_file"])))
    kafka_props.update(file_kafka)
    for key, raw in environ.items():
        if key.startswith(KAFKA_ENV_PREFIX) and key not in known_env:
            kafka_props[key[len(KAFKA_ENV_PREFIX):].lower().replace("_", ".")] = raw
    values["kafka_properties"] = kafka_props
    settings = Settings(**values)
    validate(settings)
    return settings


def check_kafka_properties(props: Mapping[str, str]) -> None:
    """Refuse what librdkafka itself would refuse (an unknown property, a malformed value) and any property the
    worker owns, in one line, now: not as a KafkaException traceback after schemas were registered.

    librdkafka's own property list is the reference: each property is given alone to a throwaway client
    (no ``bootstrap.servers``: no connection, no thread does anything). Alone, so combinations that need
    files or brokers (``security.protocol=SSL`` reading its CA) are left to the real client.
    """
    for key in sorted(props):
        if key in FIXED_KAFKA_PROPERTIES:
            value, why = FIXED_KAFKA_PROPERTIES[key]
            raise ConfigError(f"Kafka property {key} is set by the worker itself ({value}: {why}) and cannot be "
                              "overridden")
        if key in KAFKA_PROPERTIES_FROM_SETTINGS:
            opt = _BY_NAME[KAFKA_PROPERTIES_FROM_SETTINGS[key]]
            raise ConfigError(f"Kafka property {key} is set by the worker from {opt.flag} ({opt.env_var}): "
                              "set that option instead")
    from confluent_kafka import KafkaException, Producer

    quiet = logging.getLogger("ingest.config.kafka_check")
    quiet.propagate = False  # librdkafka's notes about a client that will never connect are not for the user
    quiet.addHandler(logging.NullHandler())
    for key in sorted(props):
        try:
            Producer({key: props[key], "logger": quiet})
        except KafkaException as exc:
            reason = exc.args[0].str() if exc.args else str(exc)
            if reason.startswith("No such configuration property"):
                raise ConfigError(f"Kafka property {key} is not a librdkafka property (from {_origin(key)})") from None
            if reason.startswith("Invalid value"):
                raise ConfigError(f"Kafka property {key}: {reason} (from {_origin(key)})") from None


def _origin(key: str) -> str:
    return f"{KAFKA_ENV_PREFIX}{key.upper().replace('.', '_')}, the config file's kafka: or --kafka-properties-file"


_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}$")


def _check_url(flag: str, url: str, schemes: tuple[str, ...], hint: str = "") -> None:
    """A URL option must be absolute with one of ``schemes`` and a host: ``not-a-url`` fails here, in one
    line, instead of deep inside a client library after topics were created."""
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme.lower() not in schemes or not parts.hostname or not port_ok:
        example = f"{schemes[0]}://host:port{hint}"
        raise ConfigError(f"{flag}: {url!r} is not a {'/'.join(schemes)} URL (expected e.g. {example})")


def _check_streams(streams: list[str]) -> None:
    """Validate concrete stream names now, before anything is created; patterns wait for exchangeInfo."""
    from ingest.binance import streams as stream_names  # imports this module: import here, not at the top

    # Whatever only exchangeInfo can expand (patterns, and in newer code the retired !ticker@arr) waits for it.
    concrete = [name for name in streams if not stream_names.needs_exchange_info([name])]
    try:
        stream_names.expand(concrete)
    except ConfigError as exc:
        raise ConfigError(f"--streams: {exc}") from None


def validate(s: Settings) -> None:
    """Reject contradictory or impossible combinations with a one-line reason."""
    if not s.streams:
        raise ConfigError("--streams: at least one stream is required")
    _check_streams(s.streams)
    _check_url("--ws-url", s.ws_url, ("wss", "ws"))
    _check_url("--rest-url", s.rest_url, ("https", "http"))
    for url in _csv(s.schema_registry_url):  # the registry client accepts a comma list of URLs
        _check_url("--schema-registry-url", url, ("http", "https"), " (Apicurio: http://host:port/apis/ccompat/v7)")
    for server in _csv(s.bootstrap_servers):
        if not _HOST_PORT.match(server.split("://")[-1]):
            raise ConfigError(f"--bootstrap-servers: {server!r} is not host:port (e.g. 127.0.0.1:9092)")
    if not _TOPIC_PREFIX.match(s.topic_prefix) or s.topic_prefix in {".", ".."}:
        raise ConfigError(f"--topic-prefix: {s.topic_prefix!r} is not a legal Kafka topic name part "
                          "(letters, digits, '.', '_', '-')")
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
    for flag, value in (("--stale-timeout-s", s.stale_timeout_s), ("--shutdown-grace-s", s.shutdown_grace_s)):
        if value < 0:
            raise ConfigError(f"{flag} must be >= 0")
    if s.exchange_info_refresh_s <= 0:
        raise ConfigError("--exchange-info-refresh-s must be positive")
    if s.max_frame_bytes < 1:
        raise ConfigError("--max-frame-bytes must be at least 1")
    if s.ticker_retention_ms < 1 and s.ticker_retention_ms != -1:
        raise ConfigError("--ticker-retention-ms must be positive, or -1 for unlimited")
    if not 0 <= s.metrics_port <= 65535:
        raise ConfigError("--metrics-port must be a port number (0 picks a free one)")
    if s.coordination == "kafka" and not s.combined:
        raise ConfigError("--coordination kafka needs combined streams (--combined true): shard ownership is "
                          "decided per frame from the stream name that only combined frames carry")
    if s.coordination_shards < 1:
        raise ConfigError("--coordination-shards must be at least 1")
    if not 6.0 <= s.coordination_session_timeout_s <= 300.0:
        raise ConfigError("--coordination-session-timeout-s must be between 6 and 300 (Kafka's group limits)")
    check_kafka_properties(s.kafka_properties)
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
        "Every option of `ingest run` is one typed field of `Settings` in `ingest/config.py`; its flag, its",
        "environment variable, its key in the config file, the Helm chart's rendering of that file and this page",
        "are derived from it. Precedence: **flag > environment variable > config file > default**.",
        "",
        "The config file (`--config FILE`) is YAML: a mapping of option names (the flag without `--`, with",
        "underscores: `topic_prefix: md.spot`) to typed values (lists as YAML lists, numbers and booleans as",
        "such; a string is parsed like the flag's value), plus an optional `kafka:` mapping of librdkafka",
        "properties. YAML rather than TOML because the Helm chart renders the file from its values (YAML, with",
        "Helm holding every number as a float, which TOML would type as a float) and operators already write",
        "the chart's values in YAML. An unknown key is an error, like an unknown `INGEST_*` variable.",
        "",
        "Unknown `INGEST_*` variables are an error at start (the local stack's",
        "`INGEST_STACK_DIR`, `INGEST_STACK_CACHE`, `INGEST_STACK_KAFKA_HEAP` and `INGEST_STACK_REGISTRY_HEAP` are",
        "known). Choices are case-insensitive (`--log-level debug`). A wrong value is one line and exit code 2",
        "before anything is created; concrete `--streams` are checked when the settings load, and per-symbol",
        "streams whose symbol exchangeInfo does not list are refused at start.",
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
        "`--kafka-properties-file`, and from the config file's `kafka:` mapping; the environment wins over the config",
        "file, which wins over the properties file. Every property is checked against librdkafka's own list when",
        "the settings load: an unknown property or a malformed value is one line and exit code 2. The worker owns "
        + ", ".join(f"`{k}`" for k in sorted(FIXED_KAFKA_PROPERTIES)) + " (setting them is an error) and sets "
        + ", ".join(f"`{k}` from `{_BY_NAME[n].flag}`" for k, n in KAFKA_PROPERTIES_FROM_SETTINGS.items())
        + " (setting those properties is an error too: set the option).",
        "Secrets (`*password*`, `*secret*`, JAAS config, registry user info) are masked in logs.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
