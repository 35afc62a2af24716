"""Slow and abusive clients must not starve postbacks: limits on connections still sending a head.

waitress holds at most `connection_limit` connections and, at the limit, stops accepting
new ones until one closes. Its `channel_timeout` only closes a connection that has been
*silent* that long: a client trickling one byte of its request head per second is never
silent, so 300 of them hold every slot for ever and each postback waits in the listen
backlog until it times out (issue 15: every postback timed out for 60 s).

`guard(server, limits, ...)` adds three measures at the layer that sees every connection,
waitress's server loop (docs/deployment.md has what each one measured alone):

- **a deadline for the whole request head** (`head_timeout`): a connection must deliver
  the complete head of its request within this many seconds of being accepted (of its
  first byte, for a later request on a kept-alive connection), however steadily it
  trickles. Enforced by the server's maintenance pass, run every second;
- **shedding the oldest waiting connections near the limit** (`shed_oldest`): when the
  open connections come within `shed_headroom` of `connection_limit`, the connections
  that have waited longest for a complete head (one that has sent nothing yet included) are closed, so
  the server never stops accepting and a new postback always gets a slot;
- **a per-address cap** (`max_per_address`, off by default): connections from one
  address past the cap are closed at once. Addresses for which `exempt(address)` is true
  (the config's `trusted_proxies`: every client of a proxy shares its address) are not capped.

A connection closed by any of them never sent a whole request, so nothing is logged or
answered; each closing is counted (`GuardCounts`, shown by /metrics), and an unfinished
head is also counted as an `incomplete` unlogged request (receiver.http_errors).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from waitress.channel import HTTPChannel


@dataclass(frozen=True)
class ConnectionLimits:
    """What `guard` enforces; None (or False) turns a measure off."""

    head_timeout: float | None = 10.0
    shed_oldest: bool = True
    shed_headroom: int = 16
    max_per_address: int | None = None

    def __post_init__(self) -> None:
        if self.head_timeout is not None and self.head_timeout <= 0:
            raise ValueError(f"head_timeout must be a positive number of seconds, not {self.head_timeout}")
        if self.shed_headroom < 1:
            raise ValueError(f"shed_headroom must be at least 1, not {self.shed_headroom}")
        if self.max_per_address is not None and self.max_per_address < 1:
            raise ValueError(f"max_per_address must be at least 1 (or None: no cap), not {self.max_per_address}")


class GuardCounts:
    """Connections closed by the guard, by why, since the server started (read by /metrics)."""

    WHY = ("head_timeout", "shed", "per_address")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.WHY, 0)

    def add(self, why: str, n: int = 1) -> None:
        with self._lock:
            self._counts[why] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class GuardedChannel(HTTPChannel):
    """A channel that knows since when it has been waiting for a request head.

    `head_waiting_since` is the time the connection was accepted (first request), or the
    first byte of a later request's head; None while no head is due (a request is
    being served, or the connection is idle after an answer: channel_timeout's business).
    """

    head_waiting_since: float | None = None
    _address_counted = False

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        super().__init__(server, sock, addr, adj, map=map)
        self.head_waiting_since = self.creation_time
        server.connection_opened(self)

    def received(self, data: bytes) -> bool:
        before = self.request
        result = super().received(data)
        request = self.request
        if request is None or request.headers_finished:
            self.head_waiting_since = None
        elif request is not before or self.head_waiting_since is None:
            self.head_waiting_since = time.time()
        return result

    def del_channel(self, map: Any = None) -> None:
        super().del_channel(map)
        self.server.connection_closed(self)


class GuardedServer:
    """Mixed into the waitress server class by `guard` (see the module's docstring)."""

    limits: ConnectionLimits
    guard_counts: GuardCounts
    exempt: Callable[[str], bool]
    per_address: Counter[str]
    active_channels: dict[int, Any]
    adj: Any

    def connection_opened(self, channel: GuardedChannel) -> None:
        cap = self.limits.max_per_address
        address = _address(channel)
        if cap is None or address is None or self.exempt(address):
            return
        channel._address_counted = True
        self.per_address[address] += 1
        if self.per_address[address] > cap:
            channel.will_close = True  # closed by the loop's next pass, before anything is read
            self.guard_counts.add("per_address")

    def connection_closed(self, channel: GuardedChannel) -> None:
        if channel._address_counted:
            channel._address_counted = False
            address = _address(channel)
            self.per_address[address] -= 1
            if self.per_address[address] <= 0:
                del self.per_address[address]

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # type: ignore[misc]  # waitress: idle channels past channel_timeout
        timeout = self.limits.head_timeout
        if timeout is None:
            return
        cutoff = now - timeout
        late = [channel for channel in self.active_channels.values()
                if _waiting(channel) and channel.head_waiting_since < cutoff]
        for channel in late:
            channel.will_close = True
        if late:
            self.guard_counts.add("head_timeout", len(late))

    def readable(self) -> bool:
        if self.limits.shed_oldest:
            self.shed_waiting()
        return super().readable()  # type: ignore[misc]

    def shed_waiting(self) -> None:
        """Near the connection limit, close the connections waiting longest for a head."""
        channels = self.active_channels
        threshold = self.adj.connection_limit - self.limits.shed_headroom
        if len(channels) < threshold:
            return
        closing = sum(1 for channel in channels.values() if channel.will_close)
        excess = len(channels) - closing - threshold + 1
        if excess <= 0:
            return
        oldest = heapq.nsmallest(excess, (c for c in channels.values() if _waiting(c)),
                                 key=lambda c: c.head_waiting_since)
        for channel in oldest:
            channel.will_close = True
        if oldest:
            self.guard_counts.add("shed", len(oldest))


def _waiting(channel: Any) -> bool:
    return (getattr(channel, "head_waiting_since", None) is not None and not channel.requests
            and not channel.will_close)


def _address(channel: Any) -> str | None:
    addr = channel.addr
    return addr[0] if isinstance(addr, tuple) and addr else None


def guard(server: Any, limits: ConnectionLimits, exempt: Callable[[str], bool] = lambda address: False
          ) -> GuardCounts:
    """Apply `limits` to a waitress server from waitress.server.create_server (after any other
    channel hooks, e.g. receiver.http_errors.install); returns the counts of what it closes."""
    server_class = type(server)
    server.__class__ = type(f"Guarded{server_class.__name__}", (GuardedServer, server_class), {})
    server.channel_class = type(f"Guarded{server.channel_class.__name__}", (GuardedChannel, server.channel_class), {})
    server.limits = limits
    server.guard_counts = GuardCounts()
    server.exempt = exempt
    server.per_address = Counter()
    if limits.head_timeout is not None:
        # The maintenance pass runs at most every cleanup_interval: a deadline needs it often.
        server.adj.cleanup_interval = min(server.adj.cleanup_interval, 1)
        server.next_channel_cleanup = 0
    return server.guard_counts
