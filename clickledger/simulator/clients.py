"""The clients a simulation sends through, all with `sending.Client`'s one `send`:
`HttpClient` to a running receiver, `InProcessClient` into the receiver app itself."""

from __future__ import annotations

import http.client
import itertools
import threading
from typing import Any
from urllib.parse import urlsplit

from falcon.testing import create_environ

from clickledger.simulator.plan import SimulationError
from clickledger.simulator.sending import REQUEST_TIMEOUT, Answer, Request

# The remote addresses of the simulated visitors and partners, taken in turn by in-process
# requests (over HTTP the socket gives the address). Documentation ranges: never routable.
CLIENT_ADDRS = ("203.0.113.7", "198.51.100.23", "192.0.2.44", "203.0.113.81", "198.51.100.9")


class HttpClient:
    """Keep-alive connections to the receiver, one per sending thread."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SimulationError(f"--url must be an http(s) URL like http://127.0.0.1:8080, got {url!r}")
        self.url = url.rstrip("/")
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.netloc = parts.netloc.lower()
        self.prefix = parts.path.rstrip("/")
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=REQUEST_TIMEOUT)
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def send(self, request: Request, timeout: float) -> Answer:
        """The receiver's answer. A request that met a keep-alive connection the server had
        already closed is resent once on a fresh one; anything else raises OSError."""
        for attempt in (0, 1):
            conn, reused = self._connection()
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request(request.method, self.prefix + request.target, body=request.body,
                             headers=request.headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop()
                if reused and attempt == 0:
                    continue
                raise
            except (OSError, http.client.HTTPException):
                self._drop()
                raise
            if resp.will_close:
                self._drop()
            return Answer(resp.status, resp.getheader("Location"), data, attempt == 1)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


class InProcessClient:
    """Requests handed straight to the receiver app: same app, same log, no sockets.

    Used where the receiver's clock is simulated (history, the offline generator's
    templates); every request still goes through the receiver's own code and becomes one
    durable log record. The app is called as a WSGI server would, without falcon.testing's
    per-request WSGI validator, which took two thirds of each request's time.
    """

    def __init__(self, app: Any, remote_addrs: tuple[str, ...] = CLIENT_ADDRS):
        self._app = app
        self._addrs = remote_addrs
        self._turn = itertools.count()
        self.url = "in-process receiver"
        self.netloc = urlsplit(app.receiver.config.public_url).netloc.lower()

    def send(self, request: Request, timeout: float) -> Answer:
        path, _, query = request.target.partition("?")
        environ = create_environ(path, query_string=query, method=request.method, headers=request.headers,
                                 body=request.body or b"",
                                 remote_addr=self._addrs[next(self._turn) % len(self._addrs)])
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer["status"] = int(status.split()[0])
            answer["location"] = next((v for k, v in headers if k.lower() == "location"), None)

        body = b"".join(self._app(environ, start_response))
        return Answer(answer["status"], answer["location"], body)

    def close(self) -> None:
        pass


__all__ = ["CLIENT_ADDRS", "HttpClient", "InProcessClient"]
