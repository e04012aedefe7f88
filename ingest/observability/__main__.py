"""``python -m ingest.observability [--check]``: write (or check) the generated dashboard and metrics docs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ingest.observability import dashboard, metrics_doc

ROOT = Path(__file__).resolve().parents[2]
GENERATED = {
    ROOT / "helm/binance-ingest/files/dashboard.json": dashboard.render,
    ROOT / "docs/metrics.md": metrics_doc.render,
}


def stale() -> list[Path]:
    """Generated files whose content differs from what the code generates now."""
    return [path for path, render in GENERATED.items() if not path.exists() or path.read_text() != render()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.observability", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1 if any)")
    args = parser.parse_args(argv)
    outdated = stale()
    if args.check:
        for path in outdated:
            print(f"stale: {path.relative_to(ROOT)} (run python -m ingest.observability)", file=sys.stderr)
        return 1 if outdated else 0
    for path in outdated:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(GENERATED[path]())
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
