"""Generates the values table of helm/binance-ingest/README.md from values.yaml and values.schema.json.

Descriptions are the ``# --`` comment lines above each key in values.yaml (so the file users edit is the
documentation), defaults are the parsed values, types come from the schema. Run
``.venv/bin/python -m tests.helm.values_table`` after changing values; a test fails while the README is stale.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "binance-ingest"
README = CHART / "README.md"
START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"
PIPE = "\\|"  # a literal | inside a Markdown table cell
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?P<rest>.*)$")


@dataclass(frozen=True)
class Row:
    path: tuple[str, ...]
    description: str


def documented_keys(values_text: str) -> list[Row]:
    """Every key with a ``# --`` comment directly above it, with its full dotted path."""
    rows: list[Row] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#") and pending:
            pending.append(stripped[1:].strip())
            continue
        match = KEY_LINE.match(line)
        if match:
            indent = len(match["indent"])
            stack = [(i, k) for i, k in stack if i < indent] + [(indent, match["key"])]
            if pending:
                rows.append(Row(tuple(k for _, k in stack), " ".join(pending)))
        pending = []
    return rows


def lookup(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def schema_type(schema: dict[str, Any], path: tuple[str, ...]) -> str:
    node: dict[str, Any] = schema
    for key in path:
        node = node.get("properties", {}).get(key, {})
        while "$ref" in node:
            node = lookup(schema, tuple(node["$ref"].removeprefix("#/").split("/")))
    if "enum" in node:
        return " \\| ".join(json.dumps(v) for v in node["enum"])
    if "oneOf" in node:
        return " or ".join(str(option.get("type")) for option in node["oneOf"])
    return str(node.get("type", "object"))


def table() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for row in documented_keys((CHART / "values.yaml").read_text()):
        default = json.dumps(lookup(values, row.path)).replace("|", PIPE)
        description = row.description.replace("|", PIPE)
        lines.append(f"| `{'.'.join(row.path)}` | {schema_type(schema, row.path)} | `{default}` | {description} |")
    return "\n".join(lines)


def with_table(readme: str) -> str:
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main() -> int:
    README.write_text(with_table(README.read_text()))
    print(f"wrote the values table into {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
