"""The soak's fault plan: Binance's and the infrastructure's misbehaviour, compressed, at seeded random times.

Why a plan made up front: the same ``--seed`` gives the same faults at the same offsets, so a run that found
something can be repeated; and the report can say how many of each kind were planned and how many applied.
Times are drawn independently per kind (uniform over the run, minus a quiet start and end), so faults overlap
at random: a broker outage during a rotation, a silence during a malformed burst, a 418 during a listing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ingest.sim.faults import MALFORMED_KINDS

PER_HOUR = {  # how often each kind happens per hour of soak (each at least once in any run)
    "abnormal_close": 30,  # 1006 (TCP cut) or 1011 (internal error) from the server
    "server_shutdown": 20,  # {"e":"serverShutdown"} then a close after the grace (when the simulator has it)
    "silence": 15,
    "slow": 15,
    "duplicate": 20,
    "malformed": 20,
    "rest_429": 12,
    "rest_418": 12,
    "broker_kill": 12,  # SIGKILL, down for 5-20 s, restarted
    "registry_restart": 12,
    "listing": 60,
    "delisting": 60,
}
# Above the worker's --max-frame-bytes (4 MiB): the simulator's default of 2 MiB is a good frame to this worker,
# ~13,000 copies of one ticker, which it would rightly suppress as duplicates.
OVERSIZED_BYTES = 5 * 1024 * 1024
QUIET_START_S = 30.0  # the first replicas' connections and snapshots happen without interference
QUIET_END_S = 45.0  # the last broker restart and snapshot settle before the input stops


@dataclass(order=True)
class Fault:
    at_s: float
    kind: str = field(compare=False)
    params: dict[str, Any] = field(compare=False, default_factory=dict)


def plan(minutes: float, seed: int, available: set[str]) -> list[Fault]:
    """Every fault of the run with its offset from the start; kinds not in ``available`` are left out."""
    rng = random.Random(seed)
    length = minutes * 60.0
    lo, hi = QUIET_START_S, max(QUIET_START_S + 1.0, length - QUIET_END_S)
    faults: list[Fault] = []
    for kind, per_hour in PER_HOUR.items():
        if kind not in available:
            continue
        count = max(1, round(per_hour * minutes / 60.0))
        if kind in ("listing", "delisting"):  # a steady churn: one per minute, jittered
            times = [lo + (hi - lo) * (i + rng.random()) / count for i in range(count)]
        else:
            times = [rng.uniform(lo, hi) for _ in range(count)]
        faults.extend(Fault(t, kind, params(kind, rng)) for t in times)
    return sorted(faults)


def params(kind: str, rng: random.Random) -> dict[str, Any]:
    """The parameters of one fault, drawn from ranges that stay within what the worker must survive."""
    if kind == "abnormal_close":
        return {"code": rng.choice((1006, 1011))}
    if kind == "server_shutdown":
        return {"grace": rng.choice((2, 5, 10))}
    if kind == "silence":
        return {"seconds": round(rng.uniform(2.0, 20.0), 1)}
    if kind == "slow":
        return {"delay_ms": rng.choice((20, 50, 150, 400)), "seconds": round(rng.uniform(3.0, 15.0), 1)}
    if kind == "duplicate":
        return {"count": rng.randint(1, 5)}
    if kind == "malformed":
        malformed = rng.choice(MALFORMED_KINDS)
        extra = {"size": OVERSIZED_BYTES} if malformed == "oversized" else {}
        return {"kind": malformed, "count": rng.randint(1, 3), **extra}
    if kind in ("rest_429", "rest_418"):
        return {"count": rng.randint(1, 3), "retry_after": rng.randint(1, 5)}
    if kind == "broker_kill":
        return {"down_s": round(rng.uniform(5.0, 20.0), 1)}
    return {}
