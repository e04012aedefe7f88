"""The soak's own arithmetic, without servers: the growth test and the sent-log reading."""

from __future__ import annotations

import json
import random
from pathlib import Path

from bench import soak_faults, soak_stats, soak_verify


def test_growth_test_flags_a_steady_rise_and_not_noise_or_a_warmup_ramp():
    rng = random.Random(1)
    times = [i * 5.0 for i in range(720)]  # one hour of 5-s samples
    flat = [100 + rng.gauss(0, 3) + (50 if t < 300 else 0) for t in times]  # noisy, with a warm-up bump
    assert not soak_stats.slope("rss_mb", times, flat, warmup_s=600).grows
    leak = [2 + t / 60 + rng.choice((0, 1)) for t in times]  # one more connection object per minute
    fit = soak_stats.slope("conn_objects", times, leak, warmup_s=600)
    assert fit.grows and 50 < fit.per_hour < 70 and fit.low < fit.per_hour < fit.high


def test_growth_test_allows_a_bounded_step_in_a_short_run():
    times = [i * 5.0 for i in range(60)]  # five minutes
    step = [180.0 if t < 150 else 186.0 for t in times]  # six new label values appear once
    assert not soak_stats.slope("series", times, step, warmup_s=60).grows


def test_sent_log_counts_lines_repeats_and_tails(tmp_path: Path):
    log = tmp_path / "sent.jsonl"
    lines = []
    for conn, times in ((1, (1000, 1100, 1200)), (2, (1200, 1300))):
        for e in times:
            for sym in ("BTCUSDT", "币安人生USDT"):
                lines.append(f'{{"stream":"!miniTicker@arr","kind":"miniticker","symbol":"{sym}","E":{e},'
                             f'"conn":{conn},"data":{{}}}}')
    lines.append(json.dumps({"fault": "duplicate", "conn": 2, "time": 1.0, "stream": "!miniTicker@arr",
                             "tickers": 2}))
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sent = soak_verify.read_sent_log(log)
    assert sent.lines["miniticker"] == 10
    assert sent.keys["miniticker"].size == 8  # (sym, 1200) was sent on both connections
    assert sent.repeated["miniticker"] == 2
    assert sent.newest["miniticker"] == {"BTCUSDT": 1300, "币安人生USDT": 1300}
    assert sent.tail_allowance["miniticker"] == 8  # the last two frames of each connection, two tickers each


def test_fault_plan_is_seeded_and_has_every_available_kind():
    kinds = set(soak_faults.PER_HOUR) - {"server_shutdown"}
    a = soak_faults.plan(60, seed=3, available=kinds)
    assert a == soak_faults.plan(60, seed=3, available=kinds)
    counts = {k: sum(1 for f in a if f.kind == k) for k in kinds}
    assert min(counts.values()) >= 10 and "server_shutdown" not in {f.kind for f in a}
    assert all(soak_faults.QUIET_START_S <= f.at_s <= 3600 - soak_faults.QUIET_END_S for f in a)
    assert all(f.kind != "broker_kill" or 5 <= f.params["down_s"] <= 20 for f in a)
