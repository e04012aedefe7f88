"""values.yaml is documented field by field, the schema types every field, and the README's values table
is the generated one."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.helm import values_table
from tests.helm.values_table import CHART, README, documented_keys


def leaves(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in tree.items():
        path = (*prefix, key)
        out += leaves(value, path) if isinstance(value, dict) and value else [path]
    return out


def values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_every_value_is_documented() -> None:
    documented = {row.path for row in documented_keys((CHART / "values.yaml").read_text())}
    undocumented = [".".join(p) for p in leaves(values())
                    if not any(p[:n] in documented for n in range(1, len(p) + 1))]
    assert not undocumented, f"add a '# --' line above: {undocumented}"


def test_the_schema_knows_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path in leaves(values()):
        node = schema
        for key in path:
            if node.get("type") == "object" and "properties" not in node:
                break  # free-form object (e.g. securityContext), validated by Kubernetes
            node = node["properties"].get(key) if "properties" in node else None
            assert node is not None, f"values.schema.json has no {'.'.join(path)}"
            while "$ref" in node:
                node = values_table.lookup(schema, tuple(node["$ref"].removeprefix("#/").split("/")))


def test_readme_values_table_is_current() -> None:
    readme = README.read_text()
    assert values_table.with_table(readme) == readme, "run: .venv/bin/python -m tests.helm.values_table"
    for row in documented_keys((CHART / "values.yaml").read_text()):
        assert f"| `{'.'.join(row.path)}` |" in readme
