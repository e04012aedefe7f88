"""Errors after which the process cannot go on.

A reconnect, a retry or a dead letter cannot repair them (e.g. librdkafka's fatal idempotent-producer errors:
the producer instance is unusable from then on). The worker ends with one log line and exit code
``EXIT_FATAL``; Kubernetes restarts the pod with a fresh producer. They are a separate class so that code
which survives ordinary failures (the WebSocket supervisor, the frame loop) can let exactly these through.
"""

from __future__ import annotations

EXIT_FATAL = 3
"""Exit code of ``ingest run`` after a fatal error (2 is bad configuration, 0 a clean stop)."""


class FatalError(Exception):
    """The process must end: nothing it can do in-process will make it work again."""
