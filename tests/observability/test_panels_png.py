"""The PNG renderer draws the panels.json that the live Prometheus test writes."""

from __future__ import annotations

import json
from pathlib import Path

from ingest.observability import panels_png


def test_renders_a_png_with_filled_legends(tmp_path: Path) -> None:
    start = 1_700_000_000.0

    def series(labels: dict[str, str], values: list[float]) -> dict:
        return {"metric": labels, "values": [[start + i, str(v)] for i, v in enumerate(values)]}

    data = {"start": start, "end": start + 3, "panels": {
        "tickers_per_s": [{"legend": "{{topic}}", "series": [series({"topic": "t.miniticker"}, [80, 81, 79, 80])]}],
        "event_lag": [{"legend": "{{topic}} p99", "series": [series({"topic": "t.miniticker"}, [0.2, "NaN", 6, 1])]}],
        "reconnects": [{"legend": "{{reason}}", "series": [series({"reason": "1011"}, [0, 1, 1, 0])]}],
    }}
    source = tmp_path / "panels.json"
    source.write_text(json.dumps(data))
    out = tmp_path / "img" / "panels.png"
    assert panels_png.main([str(source), str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
    assert panels_png.legend("{{topic}} p99", {"topic": "a"}) == "a p99"
