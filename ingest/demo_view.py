"""The demo's terminal view: decode framed Avro via the registry, and draw a small table.

Kept apart from ``demo.py`` (process orchestration) so the rendering and decoding are unit-testable.
Decoding resolves each schema id in the registry, as any consumer would; it never reads schemas/.
"""

from __future__ import annotations

import io
import json
from decimal import Decimal, InvalidOperation
from typing import Any, cast

import fastavro

from ingest.avro import make_client, split_framing


class Decoder:
    """Confluent-framed Avro -> dict, with writer schemas fetched by id and cached."""

    def __init__(self, registry_url: str, user_info: str = "") -> None:
        self._client = make_client(registry_url, user_info)
        self._schemas: dict[int, Any] = {}

    def decode(self, data: bytes) -> dict[str, Any]:
        schema_id, body = split_framing(data)
        schema = self._schemas.get(schema_id)
        if schema is None:
            text = self._client.get_schema(schema_id).schema_str
            if text is None:
                raise ValueError(f"the registry has no schema text for id {schema_id}")
            schema = self._schemas[schema_id] = fastavro.parse_schema(json.loads(text))
        return cast(dict[str, Any], fastavro.schemaless_reader(io.BytesIO(body), schema, None))

    def close(self) -> None:
        self._client.close()


def _change_pct(record: dict[str, Any]) -> str:
    try:
        close, open_ = Decimal(record["close_price"]), Decimal(record["open_price"])
    except (KeyError, InvalidOperation):
        return "?"
    if open_ == 0:
        return "-"
    return f"{(close - open_) / open_ * 100:+.2f}%"


def render(latest: dict[str, dict[str, Any]], counters: dict[str, float], received: int, rows: int,
           elapsed_s: float, clear: bool) -> str:
    """One screen: the most recently updated symbols, then the worker's counters."""
    newest = sorted(latest.values(), key=lambda r: r["event_time"], reverse=True)[:rows]
    lines = ["\x1b[2J\x1b[H" if clear else "",
             f"binance-ingest demo: {received} records consumed from Kafka in {elapsed_s:.0f}s, "
             f"{len(latest)} symbols seen",
             f"{'SYMBOL':<14}{'PRICE':>20}{'24H CHANGE':>12}{'SOURCE':>15}{'LAG ms':>9}"]
    for rec in newest:
        lag = rec.get("_lag_ms")
        lines.append(f"{rec['symbol']:<14}{rec['close_price']:>20}{_change_pct(rec):>12}"
                     f"{rec.get('source', '')!s:>15}{(f'{lag:.0f}' if lag else '-'):>9}")
    lines.append("worker: " + ", ".join(f"{name}={value:.0f}" for name, value in sorted(counters.items())))
    return "\n".join(lines)
