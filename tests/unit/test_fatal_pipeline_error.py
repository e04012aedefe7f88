"""Errors of the pipeline are not connection errors (issue 14).

A fatal producer error reaches the frame loop the way it does in production: from ``KafkaSink.poll()``, which the
pipeline calls after every frame (the real KafkaSink; only the librdkafka handle is a fake here, raising what
the real binding raises; tests/faults/test_fatal_kafka_error.py provokes the real error on a real broker), and
the frame comes from the real StreamSource over a real local WebSocket server. It must end
``StreamSource.run()`` with that error, not become a reconnect; ``ingest run`` then exits with ``EXIT_FATAL``.
A non-fatal exception of the pipeline loses that frame only: the connection stays up and keeps delivering.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from ingest import metrics, worker
from ingest.binance.connection import FrameMeta, StreamSource
from ingest.config import Settings
from ingest.fatal import EXIT_FATAL
from ingest.kafka.producer import FatalProducerError, KafkaSink
from tests.unit.test_connection import TEST_TIMEOUT_S, reconnects, run, settings, wait_until
from tests.unit.ws_server import FakeBinance


def failed_frames() -> float:
    return metrics.REGISTRY.get_sample_value("binance_ingest_frames_failed_total", {"stream": "@miniTicker"}) or 0.0


class FatalAfter:
    """A librdkafka handle that accepts records and, at the ``n``-th poll, fails the way the real binding does
    after librdkafka raised a fatal error: ``poll()`` raises a KafkaException carrying the fatal KafkaError
    (seen against a real broker in tests/faults/test_fatal_kafka_error.py)."""

    def __init__(self, conf: dict[str, Any], n: int) -> None:
        self.polls = 0
        self.n = n
        self.produced = 0

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self.produced += 1

    def poll(self, timeout: float = 0) -> int:
        self.polls += 1
        if self.polls == self.n:
            raise KafkaException(KafkaError(KafkaError._GAPLESS_GUARANTEE, "Message size too large", fatal=True))
        return 0


def test_a_fatal_producer_error_ends_the_source_instead_of_reconnecting():
    handles: list[FatalAfter] = []

    def factory(conf: dict[str, Any]) -> FatalAfter:
        handles.append(FatalAfter(conf, n=3))
        return handles[0]

    sink = KafkaSink(Settings(), producer_factory=factory)  # type: ignore[arg-type]
    frames: list[FrameMeta] = []

    async def on_frame(frame: bytes | str, meta: FrameMeta) -> None:
        frames.append(meta)
        await sink.produce("t", b"k", frame.encode() if isinstance(frame, str) else frame, 1)
        sink.poll()

    async def scenario() -> None:
        async with FakeBinance() as server:
            source = StreamSource(settings(server), ["btcusdt@miniTicker"], on_frame)
            before = reconnects("error"), reconnects("closed")
            with pytest.raises(FatalProducerError, match="_GAPLESS_GUARANTEE"):
                await asyncio.wait_for(source.run(), TEST_TIMEOUT_S / 2)
            await asyncio.sleep(0.3)  # a reconnect would happen within the backoff (0.05-0.2 s)
            connections = len(server.connections)
        assert len(frames) == 3, "frames were handled after the fatal error"
        assert connections == 1, "the source reconnected after a fatal pipeline error"
        assert (reconnects("error"), reconnects("closed")) == before
        assert not source.connected and source.status() == []
        assert frames[0].stream == "btcusdt@miniTicker", "the stream name does not travel with the frame"

    run(scenario)


def test_a_pipeline_bug_loses_the_frame_but_keeps_the_connection(caplog):
    seen: list[FrameMeta] = []

    async def on_frame(frame: bytes | str, meta: FrameMeta) -> None:
        seen.append(meta)
        if len(seen) == 2:
            raise KeyError("a bug in the pipeline")

    async def scenario() -> None:
        async with FakeBinance() as server:
            source = StreamSource(settings(server), ["btcusdt@miniTicker"], on_frame)
            before = reconnects("error")
            failed_before = failed_frames()
            task = asyncio.create_task(source.run())
            await wait_until(lambda: len(seen) >= 6)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            connections = len(server.connections)
        assert connections == 1 and reconnects("error") == before
        assert failed_frames() == failed_before + 1  # the frame is lost, but counted
        assert {meta.connection_id for meta in seen} == {"ws0-1"}

    with caplog.at_level(logging.ERROR, logger="ingest.binance.connection"):
        run(scenario)
    assert any("frame handling failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_ingest_run_exits_with_the_fatal_code_and_one_line(monkeypatch, caplog):
    """``worker.main``: the error that ended ``Worker.run`` becomes one critical line and ``EXIT_FATAL``."""
    err = FatalProducerError(KafkaError(KafkaError._FATAL, "Producer fenced by newer instance", fatal=True))

    async def failing_run(self: worker.Worker) -> int:
        raise err

    monkeypatch.setattr(worker.Worker, "run", failing_run)
    monkeypatch.setattr(worker.config_mod, "load", lambda args: Settings(bootstrap_servers="127.0.0.1:1",
                                                                          schema_registry_url="http://127.0.0.1:1"))
    monkeypatch.setattr(worker, "setup_logging", lambda *a: None)
    with caplog.at_level(logging.CRITICAL, logger="ingest.worker"):
        code = worker.main(argparse.Namespace())
    assert code == EXIT_FATAL != 2
    lines = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1 and "Producer fenced" in lines[0].getMessage() and "restarts" in lines[0].getMessage()


def test_produce_after_the_fatal_error_is_fatal_too():
    """What the binding does after its one fatal raise (seen on a real broker): ``produce()`` raises ``_FATAL``
    with ``fatal()`` False. Catches a worker that swallowed the first raise somewhere and then loses every
    frame as a 'pipeline bug' forever, with a producer that can send nothing."""

    class Refusing:
        def __init__(self, conf: dict[str, Any]) -> None:
            pass

        def produce(self, *args: Any, **kwargs: Any) -> None:
            raise KafkaException(KafkaError(KafkaError._FATAL, "Fatal error"))

    sink = KafkaSink(Settings(), producer_factory=Refusing)  # type: ignore[arg-type]
    with pytest.raises(FatalProducerError, match="_FATAL"):
        asyncio.run(sink.produce_many("t", [(b"k", b"v", 1)]))
    assert sink.in_flight == 0


def test_a_fatal_error_of_the_reconnect_snapshot_ends_the_source_too():
    """The snapshot after a (re)connect produces through the same sink: its fatal error must not be swallowed
    as an 'on_connected failed' log line (the producer would refuse everything afterwards)."""
    err = FatalProducerError(KafkaError(KafkaError._FATAL, "Fatal error"))

    async def on_connected(connection_id: str) -> None:
        raise err

    async def on_frame(frame: bytes | str, meta: FrameMeta) -> None:
        pass

    async def scenario() -> None:
        async with FakeBinance() as server:
            source = StreamSource(settings(server), ["btcusdt@miniTicker"], on_frame, on_connected)
            with pytest.raises(FatalProducerError):
                await asyncio.wait_for(source.run(), TEST_TIMEOUT_S / 2)
            assert len(server.connections) == 1

    run(scenario)
