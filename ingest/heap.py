"""Give freed heap memory back to the operating system (glibc's ``malloc_trim``), once a minute.

Why: the worker's memory use is bursty by nature. A broker outage parks every record in librdkafka's buffer
(tens of MB at the all-market rate), a hostile frame may be megabytes, and each all-market frame is ~150 KB.
glibc keeps what was freed inside its arenas (one per thread that allocates: librdkafka's threads, the
asyncio executor) and returns it only when the top of a heap is free, so after each burst the resident size
steps up and rarely comes down, although nothing is leaked: on Kubernetes that looks like a leak, and with a
memory limit it ends in an OOM kill. ``malloc_trim(0)`` releases the free pages of every arena (since glibc 2.8
also inside a heap, with ``MADV_DONTNEED``); it costs milliseconds and runs off the event loop.

Elsewhere (musl, macOS) there is no ``malloc_trim`` and this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_INTERVAL_S = 60.0
"""Once a minute: a burst's freed memory goes back within a minute, at a cost of milliseconds per minute."""


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _find_malloc_trim()


def available() -> bool:
    """True where the C library has ``malloc_trim`` (glibc)."""
    return _MALLOC_TRIM is not None


def trim() -> bool:
    """Return free heap memory to the OS; True if some was released. Blocking (ctypes drops the GIL):
    call it from a thread."""
    if _MALLOC_TRIM is None:
        return False
    return bool(_MALLOC_TRIM(0))
