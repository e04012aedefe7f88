"""The demo's table: newest symbols first, the 24 h change computed exactly, the worker's counters."""

from datetime import UTC, datetime

from ingest.demo_view import render


def rec(symbol: str, second: int, close: str, open_: str) -> dict:
    return {"symbol": symbol, "event_time": datetime.fromtimestamp(second, UTC), "close_price": close,
            "open_price": open_, "source": "websocket", "_lag_ms": 12.0}


def test_render_orders_by_event_time_and_shows_change_and_counters():
    latest = {"AAA": rec("AAA", 100, "110.00000000", "100.00000000"),
              "BBB": rec("BBB", 200, "0.00000000", "0.00000000")}
    screen = render(latest, {"records_produced_total": 42.0}, received=2, rows=10, elapsed_s=3.0, clear=False)
    lines = screen.splitlines()
    assert lines[3].startswith("BBB") and lines[4].startswith("AAA")
    assert "+10.00%" in lines[4]
    assert "records_produced_total=42" in lines[-1]


def test_waiting_note_says_what_the_demo_waits_for():
    from ingest.demo import waiting_note

    body = '{"ready": false, "reasons": ["registry: http://r unreachable (ConnectError)"]}'
    assert waiting_note(body, 3.2).endswith("(3s): registry: http://r unreachable (ConnectError)")
    assert "no answer on /readyz yet" in waiting_note("", 1)
    assert "records on their way" in waiting_note('{"ready": true, "reasons": []}', 9)
