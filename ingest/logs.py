"""Logging setup: JSON lines for machines, short text lines for people, and no secrets in either.

A log line is an *event* (the message) plus context given with ``extra=`` (``connection_id``, ``stream``,
``reason``, ``topic``, ...). In JSON every such field is a key of its own, so a log pipeline can filter on
``reason`` without parsing text. Redaction runs in the handler, so it covers every logger, including
librdkafka's and websockets' records that pass through the root logger.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import orjson

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is context to print.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime",
                                                                                     "taskName"}
_HANDLER_MARK = "_binance_ingest_handler"
MASK = "***"

# Keys whose values are secrets: passwords, SASL/JAAS settings, tokens, API keys, registry basic-auth user info.
_SECRET_KEY = re.compile(r"(pass(word|wd)?|secret|sasl|jaas|token|api[_.-]?key|credential|user[_.-]?info"
                         r"|private[_.-]?key|key\.pem)", re.IGNORECASE)
# ``key=value``, ``key: value``, ``"key": "value"`` where the key looks secret; an unquoted value ends at
# whitespace, a comma, a semicolon or a brace. Inside a JAAS string the ``password="..."`` pair is matched on its own.
_SECRET_PAIR = re.compile(
    r"""(?P<key>["']?[\w.-]*(?:pass(?:word|wd)?|secret|jaas|token|api[_.-]?key|user[_.-]?info)[\w.-]*["']?"""
    r"""\s*[:=]\s*)(?P<value>"[^"]*"|'[^']*'|[^\s,;}]+)""",
    re.IGNORECASE)
# user:password@host inside URLs.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<password>[^@/\s]+)@",
                           re.IGNORECASE)


def redact_text(text: str) -> str:
    """Mask secret-looking ``key=value`` pairs and URL passwords in free text."""
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)

    def mask(m: re.Match[str]) -> str:
        value = m["value"]
        quote = value[0] if value[:1] in {'"', "'"} else ""
        return f"{m['key']}{quote}{MASK}{quote}"

    return _SECRET_PAIR.sub(mask, text)


def redact_value(key: str, value: Any) -> Any:
    """Mask a context value whose key looks secret; recurse into dicts (e.g. a settings dump)."""
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if _SECRET_KEY.search(key) and value not in (None, "", MASK):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactingFilter(logging.Filter):
    """Rewrites a record before any formatter sees it: message, arguments and ``extra=`` fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw text rather than lose the line
            message = str(record.msg)
        record.msg, record.args = redact_text(message), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, redact_value(key, value))
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def context(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record, in the order they were given."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, then the context fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in context(record).items():
            line.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """``12:00:01.234 WARNING ingest.binance.connection: reconnecting  connection_id=c1 reason=1011``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        text = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = context(record)
        if fields:
            text += "  " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        return text


_VARIABLE = re.compile(r"\d+")


class RateLimitFilter(logging.Filter):
    """One line per distinct message per ``interval_s``; the next one that passes carries ``suppressed=N``.

    librdkafka retries an unreachable broker every few hundred milliseconds and logs every attempt (584 lines
    in 25 s); the first line says all there is to say, and the count says it is still going on. Messages that
    differ only in numbers (ports, milliseconds, attempt counts) are the same message.
    """

    def __init__(self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 only: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.only = only  # limit only these messages (empty: all of the logger's)
        self._clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}  # key -> (last passed at, suppressed since)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        if self.only and text not in self.only:
            return True
        key = (record.name, record.levelno, _VARIABLE.sub("#", text + str(getattr(record, "reason", ""))))
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.suppressed = last[1]
        if len(self._seen) > 1000:  # bounded: many distinct messages are kept for one interval at most
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval_s}
        self._seen[key] = (now, 0)
        return True


RATE_LIMITED: dict[str, tuple[str, ...]] = {"ingest.kafka.librdkafka": (), "ingest.kafka.producer": ("producer error",)}
"""Kafka client errors, which repeat for as long as an outage lasts: every line of librdkafka, and the producer's
error callback. (Not the producer's per-record lines: each lost record is logged, on purpose.)"""


def librdkafka_logger() -> logging.Logger:
    """The logger handed to every Producer, AdminClient and Consumer (``logger=``): librdkafka's own lines then
    go through our handler (JSON with --log-format json, redacted, rate-limited) instead of raw to stderr."""
    return logging.getLogger("ingest.kafka.librdkafka")


def setup_logging(fmt: str = "auto", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Configure the root logger once per process (calling again replaces our handler, never stacks it).

    ``fmt`` is ``json``, ``text`` or ``auto`` (text when the stream is a terminal, JSON otherwise: a pod's
    stdout goes to a log collector, a developer's terminal goes to a person).
    """
    if fmt not in {"auto", "json", "text"}:
        raise ValueError(f"log format must be auto, json or text, not {fmt!r}")
    stream = sys.stderr if stream is None else stream
    if fmt == "auto":
        fmt = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, only in RATE_LIMITED.items():
        logger = logging.getLogger(name)
        for old_filter in [f for f in logger.filters if isinstance(f, RateLimitFilter)]:
            logger.removeFilter(old_filter)
        logger.addFilter(RateLimitFilter(only=only))
    # Libraries that log every frame or request at INFO/DEBUG would drown the worker's own events.
    for noisy in ("websockets", "urllib3", "asyncio", "httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
