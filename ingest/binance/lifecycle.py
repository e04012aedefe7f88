"""One WebSocket connection's lifecycle: an explicit state machine and what is known about the connection.

    CONNECTING -> SUBSCRIBING -> WAITING -> DELIVERING -> CLOSED
                              \\-----------> DELIVERING        (data arrived while subscribing)
    any state -> CLOSED; CLOSED is final

``WAITING``: connected and subscribed, no data frame yet. ``DELIVERING``: data arrived and every subscription
is in; only then does the shard count as connected for /readyz. The asyncio events beside the state are what
other tasks await (the first data frame, a ``serverShutdown`` announcement, the end), not more state.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection

from ingest.backoff import Backoff
from ingest.binance.control import ControlChannel


class ConnState(enum.Enum):
    CONNECTING = "connecting"
    SUBSCRIBING = "subscribing"
    WAITING = "waiting"
    DELIVERING = "delivering"
    CLOSED = "closed"


_NEXT: dict[ConnState, frozenset[ConnState]] = {
    ConnState.CONNECTING: frozenset({ConnState.SUBSCRIBING, ConnState.CLOSED}),
    ConnState.SUBSCRIBING: frozenset({ConnState.WAITING, ConnState.DELIVERING, ConnState.CLOSED}),
    ConnState.WAITING: frozenset({ConnState.DELIVERING, ConnState.CLOSED}),
    ConnState.DELIVERING: frozenset({ConnState.CLOSED}),
    ConnState.CLOSED: frozenset(),
}


@dataclass(eq=False)
class Connection:
    """One physical WebSocket of a shard and everything known about it."""

    id: str
    shard: Shard
    control: ControlChannel
    streams: list[str]
    state: ConnState = ConnState.CONNECTING
    ws: ClientConnection | None = None
    opened_mono: float = 0.0
    connected_since: float | None = None  # wall clock of the first data frame
    last_frame_at: float | None = None  # wall clock
    last_frame_mono: float = 0.0
    raw_counter: Any = None  # ws_messages_total child for raw connections
    close_exc: BaseException | None = None
    first_data: asyncio.Event = field(default_factory=asyncio.Event)
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)  # the server announced serverShutdown
    ended: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    handling: bool = False  # inside on_frame: a blocked pipeline (buffer policy "block") is not a silent peer

    def advance(self, to: ConnState) -> bool:
        """Move to ``to``; False (and no change) from CLOSED, where a late step of a given-up connection lands.
        Any other transition not in the diagram is a bug and raises."""
        if self.state is ConnState.CLOSED:
            return False
        if to is self.state:
            return True
        if to not in _NEXT[self.state]:
            raise RuntimeError(f"websocket {self.id}: no transition {self.state.value} -> {to.value}")
        self.state = to
        return True

    def subscribed(self) -> None:
        """Every subscription is in: DELIVERING when data already arrived, else WAITING for it."""
        self.advance(ConnState.DELIVERING if self.first_data.is_set() else ConnState.WAITING)

    @property
    def live(self) -> bool:
        return self.ws is not None and not self.ended.done()


@dataclass(eq=False)
class Shard:
    """A set of streams that one connection carries; survives reconnects and rotations."""

    index: int
    streams: list[str]
    backoff: Backoff
    current: Connection | None = None
    replacement: Connection | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    removed: bool = False
    generation: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def connections(self) -> list[Connection]:
        return [c for c in (self.current, self.replacement) if c is not None]
