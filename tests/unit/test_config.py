"""The settings object: precedence, validation, secrets, and one definition per option."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from ingest import config
from ingest.config import ConfigError, Settings


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(argv)


def test_every_option_is_a_settings_field_with_the_same_default():
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    defaults = Settings()
    for opt in config.OPTIONS:
        assert opt.name in fields, opt.name
        assert getattr(defaults, opt.name) == opt.default, opt.name
    assert set(fields) - {o.name for o in config.OPTIONS} == {"kafka_properties"}


def test_flags_override_env_which_overrides_defaults():
    env = {"INGEST_TOPIC_PREFIX": "from.env", "INGEST_METRICS_PORT": "9999", "KAFKA_BOOTSTRAP_SERVERS": "k:1"}
    s = config.load(_args("--topic-prefix", "from.flag"), env)
    assert s.topic_prefix == "from.flag"
    assert s.metrics_port == 9999
    assert s.bootstrap_servers == "k:1"
    assert s.topic("ticker") == "from.flag.ticker"


def test_lists_and_booleans_parse():
    s = config.load(_args("--streams", "btcusdt@ticker, ethusdt@ticker", "--combined", "false"), {})
    assert s.streams == ["btcusdt@ticker", "ethusdt@ticker"]
    assert s.combined is False


def test_unknown_ingest_env_var_is_an_error():
    with pytest.raises(ConfigError, match="INGEST_TOPIC_PREFX"):
        config.load(_args(), {"INGEST_TOPIC_PREFX": "typo"})


@pytest.mark.parametrize(("argv", "message"), [
    (("--max-streams-per-connection", "2000"), "between 1 and 1024"),
    (("--backoff-initial-s", "10", "--backoff-max-s", "1"), "backoff"),
    (("--metrics-port", "abc"), "invalid value"),
    (("--quote-assets", "USDT"), "patterns"),
])
def test_contradictory_or_bad_values_fail_with_one_line(argv, message):
    with pytest.raises(ConfigError, match=message) as info:
        config.load(_args(*argv), {})
    assert "\n" not in str(info.value)


def test_bad_choice_from_env_fails_with_one_line():
    with pytest.raises(ConfigError, match="not one of"):
        config.load(_args(), {"INGEST_BUFFER_POLICY": "drop_random"})


def test_kafka_properties_pass_through_from_env_and_file(tmp_path):
    props = tmp_path / "client.properties"
    props.write_text("# comment\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n")
    env = {"INGEST_KAFKA_SASL_USERNAME": "alice", "INGEST_KAFKA_SASL_PASSWORD": "s3cret",
           "INGEST_KAFKA_PROPERTIES_FILE": str(props)}
    s = config.load(_args(), env)
    assert s.kafka_properties == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                  "sasl.username": "alice", "sasl.password": "s3cret"}
    redacted = s.redacted()
    assert redacted["kafka_properties"]["sasl.password"] == "***"
    assert "s3cret" not in repr(redacted)


def test_worker_owned_kafka_settings_cannot_be_overridden():
    with pytest.raises(ConfigError, match=r"enable\.idempotence"):
        config.load(_args(), {"INGEST_KAFKA_ENABLE_IDEMPOTENCE": "false"})


def test_registry_secret_is_redacted():
    s = config.load(_args("--schema-registry-user-info", "bob:hunter2"), {})
    assert s.redacted()["schema_registry_user_info"] == "***"


def test_run_requires_kafka_and_registry():
    with pytest.raises(ConfigError, match="bootstrap"):
        config.require_kafka(config.load(_args(), {}))


def test_configuration_doc_is_generated_from_the_options():
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text() == config.markdown(), "run: python -m ingest.config > docs/configuration.md"


def test_url_and_address_checks_accept_what_the_clients_accept():
    """The early checks refuse malformed values but nothing the clients would take (no false refusals)."""
    from ingest.config import load

    ok = load(None, environ={"SCHEMA_REGISTRY_URL": "https://a.example:8081,https://b.example:8081/apis/ccompat/v7",
                             "KAFKA_BOOTSTRAP_SERVERS": "b-1.example:9092,[::1]:9093,SASL_SSL://b-2.example:9094",
                             "INGEST_WS_URL": "wss://data-stream.binance.vision", "INGEST_TOPIC_PREFIX": "a-b_c.1"})
    assert ok.topic("ticker") == "a-b_c.1.ticker"
    for env in ({"SCHEMA_REGISTRY_URL": "registry:8081"}, {"KAFKA_BOOTSTRAP_SERVERS": "broker"},
                {"INGEST_REST_URL": "ftp://x"}, {"INGEST_TOPIC_PREFIX": "a/b"}, {"INGEST_STREAMS": "btcusdt@depth"}):
        with pytest.raises(ConfigError):
            load(None, environ=env)


def test_precedence_is_flag_over_env_over_config_file_over_default(tmp_path):
    cfg = tmp_path / "ingest.yaml"
    cfg.write_text("topic_prefix: from.file\nmetrics_port: 9000\nbackoff_max_s: 7\nstreams: [btcusdt@ticker]\n"
                   "combined: false\nkafka:\n  linger.ms: 5\n  enable.ssl.certificate.verification: false\n")
    env = {"INGEST_METRICS_PORT": "9999", "INGEST_KAFKA_LINGER_MS": "2"}
    s = config.load(_args("--config", str(cfg), "--metrics-port", "9111"), env)
    assert s.metrics_port == 9111  # flag over env over file
    assert s.topic_prefix == "from.file"  # file over default
    assert s.backoff_max_s == 7.0 and isinstance(s.backoff_max_s, float)
    assert (s.streams, s.combined) == (["btcusdt@ticker"], False)
    assert s.kafka_properties == {"linger.ms": "2", "enable.ssl.certificate.verification": "false"}
    s = config.load(_args("--config", str(cfg)), {})
    assert s.metrics_port == 9000
    assert s.kafka_properties["linger.ms"] == "5"


@pytest.mark.parametrize(("text", "message"), [
    ("topic_prefx: typo\n", "unknown setting 'topic_prefx'"),
    ("metrics_port: true\n", "expected int"),
    ("buffer_policy: drop_random\n", "not one of"),
    ("- a list\n", "expected a mapping"),
    ("kafka: [1]\n", "must map"),
])
def test_bad_config_file_is_one_line(tmp_path, text, message):
    cfg = tmp_path / "ingest.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        config.load(_args("--config", str(cfg)), {})
    assert "\n" not in str(info.value)


def test_unknown_or_malformed_librdkafka_property_is_refused_at_load(tmp_path):
    with pytest.raises(ConfigError, match=r"sasl\.mechanizm is not a librdkafka property") as info:
        config.load(_args(), {"INGEST_KAFKA_SASL_MECHANIZM": "PLAIN"})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"linger\.ms: Invalid value"):
        config.load(_args(), {"INGEST_KAFKA_LINGER_MS": "soon"})
    cfg = tmp_path / "ingest.yaml"
    cfg.write_text("kafka:\n  bogus.property: 1\n")
    with pytest.raises(ConfigError, match=r"bogus\.property is not a librdkafka property"):
        config.load(_args("--config", str(cfg)), {})


def test_a_user_value_for_a_property_the_worker_sets_is_refused_not_overwritten():
    """queue.buffering.max.messages used to be overwritten silently by --buffer-max-messages."""
    with pytest.raises(ConfigError, match=r"queue\.buffering\.max\.messages .*--buffer-max-messages"):
        config.load(_args(), {"INGEST_KAFKA_QUEUE_BUFFERING_MAX_MESSAGES": "5"})
    from ingest.kafka.producer import producer_config

    s = config.load(_args("--buffer-max-messages", "777", "--bootstrap-servers", "k:1"),
                    {"INGEST_KAFKA_LINGER_MS": "3"})
    conf = producer_config(s)
    assert conf["queue.buffering.max.messages"] == 777 and conf["bootstrap.servers"] == "k:1"
    assert conf["linger.ms"] == "3"
    assert {k: conf[k] for k in config.FIXED_KAFKA_PROPERTIES} == {"enable.idempotence": True, "acks": "all",
                                                                    "partitioner": "murmur2_random"}


def test_settings_are_defined_once_from_typed_fields():
    """Types, choices and secrets of the options come from Settings' annotations and setting() metadata."""
    by_name = {opt.name: opt for opt in config.OPTIONS}
    assert by_name["metrics_port"].parse is int and by_name["streams"].type_name == "list[str]"
    assert by_name["schema_registry_user_info"].secret
    assert by_name["log_level"].choices == ("DEBUG", "INFO", "WARNING", "ERROR")
    assert [f.name for f in dataclasses.fields(Settings)][:-1] == list(by_name)
