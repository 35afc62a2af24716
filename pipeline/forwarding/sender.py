"""Sending one delivery attempt over HTTP(S): connect timeout 3 s, 15 s in all, no redirects
followed, and no request to a loopback, private or link-local address unless the config
allows private targets (checked on the addresses the name resolves to, and those are the
addresses connected to, so a name cannot be re-pointed between the check and the request).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from receiver.contract.addresses import is_private_target, parse_address

CONNECT_TIMEOUT = 3.0
TOTAL_TIMEOUT = 15.0
USER_AGENT = "clickledger-forwarder/1"
EXCERPT_BYTES = 512


@dataclass(frozen=True)
class OutgoingRequest:
    delivery_id: str
    method: str
    url: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    """What an attempt got: an HTTP status (and its Retry-After), or an error without one."""

    http_status: int | None
    error: str | None = None
    retry_after: str | None = None
    duration_ms: int = 0
    body_excerpt: str = ""


Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """The addresses a host name resolves to (an IP literal: itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class HttpSender:
    """Sends OutgoingRequests; thread-safe (a new connection per attempt)."""

    def __init__(self, *, allow_private_targets: bool = False, connect_timeout: float = CONNECT_TIMEOUT,
                 total_timeout: float = TOTAL_TIMEOUT, resolver: Resolver = resolve,
                 tls_context: ssl.SSLContext | None = None):
        self.allow_private_targets = allow_private_targets
        self.tls_context = tls_context  # None: the system's trusted CAs, certificates and host names checked
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self.resolver = resolver

    def send(self, request: OutgoingRequest) -> SendResult:
        started = time.monotonic()

        def done(status: int | None, error: str | None = None, **kw) -> SendResult:
            return SendResult(status, error, duration_ms=int((time.monotonic() - started) * 1000), **kw)

        parts = urlsplit(request.url)
        host = parts.hostname or ""
        secure = parts.scheme == "https"
        try:
            port = parts.port or (443 if secure else 80)
        except ValueError:
            return done(None, f"bad url: port of {parts.netloc!r}")
        try:
            addresses = self.resolver(host, port)
        except OSError as exc:
            return done(None, f"dns: {host} does not resolve ({exc})")
        if not self.allow_private_targets:
            private = [a for a in addresses if (ip := parse_address(a)) is None or is_private_target(ip)]
            if private:
                return done(None, f"refused: {host} is a loopback, private or link-local address ({private[0]}); "
                                  "set allow_private_targets = true in config.toml to forward there")
        sock = None
        last_error: OSError | None = None
        for address in addresses:
            try:
                sock = socket.create_connection((address, port), timeout=self.connect_timeout)
                break
            except TimeoutError as exc:
                last_error = exc
            except OSError as exc:
                last_error = exc
        if sock is None:
            if isinstance(last_error, TimeoutError):
                return done(None, f"connect timeout: no connection to {host}:{port} within {self.connect_timeout:g} s")
            return done(None, f"connect: {host}:{port}: {_reason(last_error)}")
        remaining = self.total_timeout - (time.monotonic() - started)
        # the whole exchange ends at the deadline, however slowly the server drips its answer
        timer = threading.Timer(max(remaining, 0.01), _shutdown, (sock,))
        timer.daemon = True
        timer.start()
        try:
            sock.settimeout(max(remaining, 0.01))
            if secure:
                sock = (self.tls_context or ssl.create_default_context()).wrap_socket(sock, server_hostname=host)
            # the connection is already open (to the address checked above): the class only
            # writes the request, with a Host header without the scheme's default port
            connection_class = http.client.HTTPSConnection if secure else http.client.HTTPConnection
            connection = connection_class(host, port)
            connection.sock = sock
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            headers = {"User-Agent": USER_AGENT, **request.headers}
            if request.method == "POST":
                headers.setdefault("Content-Type", "application/json")
            connection.request(request.method, path, body=request.body if request.method == "POST" else None,
                               headers=headers)
            response = connection.getresponse()
            excerpt = response.read(EXCERPT_BYTES)
            return done(response.status, retry_after=response.getheader("Retry-After"),
                        body_excerpt=excerpt.decode("utf-8", "replace"))
        except TimeoutError:
            return done(None, f"timeout: no complete answer within {self.total_timeout:g} s")
        except ssl.SSLError as exc:
            return done(None, f"tls: {exc}")
        except (http.client.HTTPException, OSError) as exc:
            if time.monotonic() - started >= self.total_timeout - 0.05:
                return done(None, f"timeout: no complete answer within {self.total_timeout:g} s")
            return done(None, f"connection: {_reason(exc)}")
        finally:
            timer.cancel()
            with contextlib.suppress(OSError):
                sock.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without an answer"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}" if exc is not None else "no address"
