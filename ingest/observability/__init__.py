"""Generators of the observability artefacts kept in the repository: the Grafana dashboard and docs/metrics.md.

Both are derived from code (the panel list in :mod:`.dashboard`, the metric catalogue of :mod:`ingest.metrics`)
and written by ``python -m ingest.observability``; tests fail when a committed file differs from what the code
generates, so the JSON and the docs cannot drift from the metrics.
"""
