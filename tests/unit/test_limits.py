"""The per-IP limits the worker respects (ingest/binance/limits.py) and the reconnect-delay defaults, on a fake
clock: the connection-attempt budget's sliding window, the 451 refusal's log and readiness reason, and the
backoff policy's two caps (ordinary closes vs the exchange's slow-down signals)."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from ingest import config, metrics
from ingest.backoff import Backoff
from ingest.binance import limits
from ingest.binance.limits import AttemptBudget, LocationRefusal
from tests.unit.test_rest import FakeClock


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


# ---- defaults -----------------------------------------------------------------------------------------

def test_defaults_follow_the_reference_and_binance_limits():
    """Ordinary reconnects within 1-5 s (the reference), slow only on the exchange's signals, 451 retried in
    minutes, and Binance's documented 300 attempts per 5 minutes."""
    s = config.load(environ={})
    assert (s.backoff_initial_s, s.backoff_max_s, s.backoff_slow_s) == (1.0, 5.0, 60.0)
    assert s.location_refused_retry_s >= 120.0, "a 451 must be retried in minutes, not seconds"
    assert s.location_refused_retry_s == 300.0
    assert (s.max_connection_attempts, s.connection_attempt_window_s) == (300, 300.0)


@pytest.mark.parametrize(("env", "match"), [
    ({"INGEST_BACKOFF_SLOW_S": "2"}, "backoff-slow-s"),
    ({"INGEST_LOCATION_REFUSED_RETRY_S": "0"}, "location-refused-retry-s"),
    ({"INGEST_MAX_CONNECTION_ATTEMPTS": "0"}, "max-connection-attempts"),
    ({"INGEST_CONNECTION_ATTEMPT_WINDOW_S": "-1"}, "max-connection-attempts"),
])
def test_contradictory_limits_are_refused(env, match):
    with pytest.raises(config.ConfigError, match=match):
        config.load(environ=env)


# ---- backoff: two caps ----------------------------------------------------------------------------------

def test_slow_down_draws_from_the_upper_half_of_the_slow_cap_and_ordinary_failures_stay_under_the_cap():
    b = Backoff(1.0, 5.0, lambda lo, hi: lo, slow_s=60.0)
    b.slow_down()
    assert b.next_delay() == 30.0
    high = Backoff(1.0, 5.0, lambda lo, hi: hi, slow_s=60.0)
    high.slow_down()
    assert high.next_delay() == 60.0
    assert high.next_delay() == 5.0  # the next ordinary failure: the ordinary cap again
    rng = random.Random(3)
    ordinary = Backoff(1.0, 5.0, rng.uniform, slow_s=60.0)
    assert max(ordinary.next_delay() for _ in range(1000)) <= 5.0
    with pytest.raises(ValueError, match="slow_s"):
        Backoff(1.0, 5.0, slow_s=4.0)


# ---- the connection-attempt budget ----------------------------------------------------------------------

def test_budget_is_a_sliding_window_that_waits_instead_of_exceeding(caplog):
    clock = FakeClock(1000.0)
    budget = AttemptBudget(3, 10.0, clock=clock, sleep=clock.sleep)
    caplog.set_level(logging.WARNING, logger="ingest")
    before = (sample("binance_ingest_ws_connect_attempts_total"),
              sample("binance_ingest_ws_connect_budget_waits_total"))

    async def attempts() -> list[float]:
        booked = []
        for gap in (0.0, 1.0, 1.0, 0.0, 0.0, 0.0):
            clock.now += gap
            await budget.acquire("ws0-1")
            booked.append(clock.now)
        return booked

    booked = asyncio.run(attempts())
    assert booked == [1000.0, 1001.0, 1002.0, 1010.0, 1011.0, 1012.0]  # each waits for the oldest to leave
    for i in range(len(booked) - 3):
        assert booked[i + 3] - booked[i] >= 10.0, "more than 3 attempts within 10 s"
    assert sample("binance_ingest_ws_connect_attempts_total") - before[0] == 6
    assert sample("binance_ingest_ws_connect_budget_waits_total") - before[1] == 3
    lines = [r for r in caplog.records if "connection-attempt budget spent" in r.getMessage()]
    assert len(lines) == 3 and "waits 8.0 s" in lines[0].getMessage()


def test_concurrent_attempts_cannot_overshoot_together():
    clock = FakeClock(1000.0)
    budget = AttemptBudget(2, 5.0, clock=clock, sleep=clock.sleep)

    booked: list[float] = []

    async def one(i: int) -> None:
        await budget.acquire(f"ws{i}-1")
        booked.append(clock.now)

    async def burst() -> None:
        await asyncio.gather(*(one(i) for i in range(5)))

    asyncio.run(burst())
    assert sorted(booked) == [1000.0, 1000.0, 1005.0, 1005.0, 1010.0]  # 2 per 5 s, never 3


# ---- HTTP 451 ---------------------------------------------------------------------------------------------

def test_refusal_logs_once_then_hourly_names_451_for_readyz_and_clears(caplog):
    clock = FakeClock(1000.0)
    refusal = LocationRefusal(300.0, clock=clock)
    caplog.set_level(logging.DEBUG, logger="ingest")
    assert not refusal.refused and refusal.reason() == ""
    for _ in range(12):  # an hour of retries every 5 minutes
        refusal.refuse("websocket", "the WebSocket handshake", "Service unavailable from a restricted location")
        clock.now += 300.0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].getMessage().startswith("Binance refuses this location: HTTP 451 on the WebSocket handshake")
    assert "use a host in an allowed region" in errors[0].getMessage()
    refusal.refuse("websocket", "the WebSocket handshake")  # 3600 s after the first line: said again, once
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2
    assert "HTTP 451" in refusal.reason() and "websocket" in refusal.reason()
    assert sample("binance_ingest_location_refused", {"source": "websocket"}) == 1
    refusal.accept("rest")  # another source succeeding says nothing about this one
    assert refusal.refused
    refusal.accept("websocket")
    assert not refusal.refused and refusal.reason() == ""
    assert sample("binance_ingest_location_refused", {"source": "websocket"}) == 0
    assert any("accepts this location again" in r.getMessage() for r in caplog.records)
    refusal.refuse("rest", "REST /api/v3/exchangeInfo")  # a new refusal after recovery is news again
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 3
    assert limits.REFUSAL_LOG_EVERY_S == 3600.0
