"""Render the main dashboard panels of a test run to a PNG, for the README and docs.

Input: the ``panels.json`` that tests/observability/test_prometheus_live.py writes (set ``INGEST_PANELS_JSON`` to
keep it): Prometheus range results of *Tickers/s by topic*, *Event lag p50/p99* and *Reconnects by reason*, with
the same PromQL as the Grafana dashboard. Needs matplotlib (the ``bench`` extra)::

    INGEST_PANELS_JSON=/tmp/panels.json .venv/bin/pytest tests/observability/test_prometheus_live.py
    .venv/bin/python -m ingest.observability.panels_png /tmp/panels.json docs/img/panels.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

PANELS = (  # key in panels.json, title, y label, y scale
    ("tickers_per_s", "Tickers/s by topic (acknowledged by Kafka)", "records/s", "linear"),
    ("event_lag", "Event lag: exchange event time to Kafka ack", "seconds", "log"),
    ("reconnects", "Reconnects by reason", "reconnects", "linear"),
)


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend templates, filled from a series' labels."""
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def render(data: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    start = data["start"]
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(10, 9), sharex=True)
    for ax, (key, title, ylabel, scale) in zip(axes, PANELS, strict=True):
        for query in data["panels"][key]:
            for series in query["series"]:
                points = [(float(t) - start, float(v)) for t, v in series["values"]]
                points = [(t, v) for t, v in points if not math.isnan(v)]
                if not points:
                    continue
                xs, ys = zip(*points, strict=True)
                name = legend(query["legend"], series["metric"])
                if key == "reconnects":
                    ax.step(xs, ys, where="post", label=name)
                else:
                    ax.plot(xs, ys, label=name, linewidth=1.2)
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylabel(ylabel)
        if scale == "log":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left")
    axes[-1].set_xlabel("seconds since the start of the test run")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.observability.panels_png",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("panels_json", type=Path)
    parser.add_argument("png", type=Path)
    args = parser.parse_args(argv)
    render(json.loads(args.panels_json.read_text()), args.png)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
