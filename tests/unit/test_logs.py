"""ingest.logs: JSON lines with context fields, readable text, and redaction of secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from ingest.logs import redact_text, setup_logging


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines_carry_time_level_event_and_context(restore_root: None) -> None:
    buf = io.StringIO()  # not a terminal: auto means JSON
    setup_logging("auto", "INFO", stream=buf)
    log = logging.getLogger("ingest.test")
    log.warning("reconnecting", extra={"connection_id": "c1", "stream": "!miniTicker@arr", "reason": "1011"})
    log.debug("hidden at INFO")
    (line,) = lines(buf)
    assert line["level"] == "WARNING" and line["logger"] == "ingest.test" and line["event"] == "reconnecting"
    assert (line["connection_id"], line["stream"], line["reason"]) == ("c1", "!miniTicker@arr", "1011")
    assert line["time"].endswith("+00:00") and "T" in line["time"]


def test_text_on_a_terminal_and_exceptions(restore_root: None) -> None:
    tty = Tty()
    setup_logging("auto", "DEBUG", stream=tty)
    log = logging.getLogger("ingest.test")
    log.info("connected", extra={"connection_id": "c2", "topic": "binance.spot.miniticker"})
    try:
        raise ValueError("bad frame")
    except ValueError:
        log.exception("parse failed")
    text = tty.getvalue()
    assert "INFO    ingest.test: connected  connection_id=c2 topic=binance.spot.miniticker" in text
    assert "Traceback" in text and "ValueError: bad frame" in text
    assert not text.lstrip().startswith("{")


def test_calling_setup_twice_does_not_duplicate_lines(restore_root: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("json", stream=first)
    setup_logging("json", stream=second)
    logging.getLogger("ingest.test").info("once")
    assert first.getvalue() == "" and len(lines(second)) == 1


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="auto, json or text"):
        setup_logging("xml")


SECRETS = ["hunter2", "s3cr3t-jaas", "tok-123", "regpass", "q9"]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_no_secret_reaches_the_output(fmt: str, restore_root: None) -> None:
    buf = io.StringIO()
    setup_logging(fmt, "INFO", stream=buf)
    log = logging.getLogger("ingest.test")
    settings = {"bootstrap_servers": "k:9092", "kafka_properties": {
        "sasl.password": "hunter2",
        "sasl.jaas.config": 'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" '
                            'password="s3cr3t-jaas";'}}
    log.info("starting with %s", settings)
    log.info("starting", extra={"settings": settings, "schema_registry_user_info": "bob:regpass"})
    log.warning("registry at http://bob:regpass@registry:8081 refused, token=tok-123 and api_key: q9")
    try:
        raise RuntimeError("login failed for sasl.password=hunter2")
    except RuntimeError:
        log.exception("kafka")
    out = buf.getvalue()
    for secret in SECRETS:
        assert secret not in out, (secret, out)
    # what is not secret survives, so the lines are still useful
    assert "k:9092" in out and "registry:8081" in out and "bob" in out


@pytest.mark.parametrize(("raw", "expected"), [
    ("password=abc rest", "password=*** rest"),
    ('{"sasl.password": "abc", "acks": "all"}', '{"sasl.password": "***", "acks": "all"}'),
    ("https://u:p@host/x", "https://u:***@host/x"),
    ("ssl.key.password: abc", "ssl.key.password: ***"),
    ("nothing secret here: topic=binance.spot.ticker", "nothing secret here: topic=binance.spot.ticker"),
])
def test_redact_text(raw: str, expected: str) -> None:
    assert redact_text(raw) == expected


def test_rate_limit_filter_passes_one_line_per_distinct_message_per_interval_with_a_count():
    import logging

    from ingest.logs import RateLimitFilter

    now = [0.0]
    limiter = RateLimitFilter(interval_s=30.0, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("ingest.kafka.librdkafka", logging.ERROR, "", 0, msg, None, None)

    passed = []
    for second in range(65):  # the same error every 0.5 s for 65 s, its port and timing changing each time
        for half in (0.0, 0.5):
            now[0] = second + half
            rec = record(f"127.0.0.1:{9000 + second}/bootstrap: Connect failed (after {second}ms in state CONNECT)")
            if limiter.filter(rec):
                passed.append(rec)
    assert len(passed) == 3  # at 0 s, 30 s and 60 s
    assert [getattr(r, "suppressed", 0) for r in passed] == [0, 59, 59]
    now[0] += 1
    assert limiter.filter(record("a different error"))  # distinct messages are not held back by each other


def test_rate_limit_can_be_narrowed_to_some_messages():
    import logging

    from ingest.logs import RateLimitFilter

    limiter = RateLimitFilter(interval_s=30.0, clock=lambda: 0.0, only=("producer error",))

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("ingest.kafka.producer", logging.WARNING, "", 0, msg, None, None)

    assert [limiter.filter(record("producer error")) for _ in range(3)] == [True, False, False]
    assert all(limiter.filter(record("record not delivered")) for _ in range(3))  # one line per lost record
