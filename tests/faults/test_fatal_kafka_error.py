"""A fatal Kafka producer error ends the worker (issue 14 item 4), against the simulator, real Kafka and registry.

The real trigger: an operator who wants no gaps sets librdkafka's ``enable.gapless.guarantee=true``
(``INGEST_KAFKA_ENABLE_GAPLESS_GUARANTEE``); then any produce request the broker refuses for good is a fatal
error of the idempotent producer (``_GAPLESS_GUARANTEE``), because carrying on would leave a gap. The test makes
the broker refuse by lowering the mini-ticker topic's ``max.message.bytes`` below one record batch while the
worker streams (``MSG_SIZE_TOO_LARGE`` from the real broker; no mock cluster). Before issue 14 the error was
raised inside the frame handler and became a WebSocket reconnect, forever, with a producer that could send
nothing more.

Compared: the worker exits by itself with ``EXIT_FATAL`` (3) soon after the refusal, logs exactly one
critical line naming the error, and reconnects no WebSocket after it.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from ingest.fatal import EXIT_FATAL
from tests.kafka_reading import read_all

pytestmark = [pytest.mark.integration, pytest.mark.faults]

EXIT_WITHIN_S = 60.0
"""A refused produce request is answered in milliseconds; the rest is librdkafka's linger and the topic config
reaching the partition leader (seconds on a loaded machine). Without the fix the worker never exits."""


def test_fatal_producer_error_ends_the_worker_with_one_line(sim_factory, worker_factory, stack_endpoints,
                                                            unique_prefix):
    sim = sim_factory(symbols=4, interval=0.2, seed=31)
    worker = worker_factory("--streams", "!miniTicker@arr", "--ws-url", sim.ws_url, "--rest-url", sim.http_url,
                            "--topic-prefix", unique_prefix, "--snapshot-on-connect", "false",
                            env={"INGEST_KAFKA_ENABLE_GAPLESS_GUARANTEE": "true"})
    worker.wait_ready()
    worker.wait_for(lambda: worker.metric("binance_ingest_records_produced_total") > 0, 30, "records acknowledged")

    admin = AdminClient({"bootstrap.servers": stack_endpoints.bootstrap_servers})
    topic = ConfigResource(ConfigResource.Type.TOPIC, f"{unique_prefix}.miniticker", incremental_configs=[
        ConfigEntry("max.message.bytes", "16", incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([topic]).values():
        future.result(30)
    refused_at = time.monotonic()
    try:
        code = worker.proc.wait(timeout=EXIT_WITHIN_S)
    except Exception:
        raise AssertionError(f"the worker kept running after the fatal error; log tail:\n{worker.log_tail()}"
                             ) from None
    took = time.monotonic() - refused_at
    events = worker.log_events()

    assert code == EXIT_FATAL, worker.log_tail()
    # librdkafka logs its own FATAL line (logger ingest.kafka.librdkafka); the worker adds exactly one
    critical = [e for e in events if e.get("level") == "CRITICAL" and e.get("logger") == "ingest.worker"]
    assert len(critical) == 1, critical
    assert "_GAPLESS_GUARANTEE" in critical[0]["event"] and "restarts" in critical[0]["event"]
    fatal_at = events.index(critical[0])
    assert not [e for e in events[:fatal_at] if "reconnecting" in e.get("event", "")], "fatal became a reconnect"
    assert not [e for e in events[fatal_at:] if "connecting" in e.get("event", "")]
    assert took < EXIT_WITHIN_S

    # Accounting: what the producer still held when it died is counted as dropped (kafka_fatal), and what it
    # reported acknowledged is exactly what Kafka has in the worker's topics.
    abandoned = [e for e in events if e.get("event") == "records not acknowledged: the producer hit a fatal error"]
    undelivered = Counter(e["reason"] for e in events if e.get("event") == "record not delivered")
    # the refused batch keeps the broker's reason; what librdkafka still held after the fatal error is kafka_fatal
    assert set(undelivered) <= {"kafka_fatal", "kafka_msg_size_too_large"}, dict(undelivered)
    stopped = [e for e in events if e.get("event") == "worker stopped"]
    assert len(stopped) == 1 and stopped[0]["abandoned"] == sum(e["dropped"] for e in abandoned), (stopped, abandoned)
    in_kafka = sum(len(read_all(stack_endpoints.bootstrap_servers, f"{unique_prefix}.{kind}"))
                   for kind in ("miniticker", "symbols", "deadletter"))
    assert in_kafka == stopped[0]["acked"], (in_kafka, stopped[0])
    print(f"\n[fatal] exit 3 after {took:.1f}s; acked {stopped[0]['acked']} = {in_kafka} in Kafka; not delivered "
          f"{dict(undelivered)}, abandoned {stopped[0]['abandoned']}")
