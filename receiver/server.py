"""Serving the receiver with waitress, with its limits set deliberately."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

import waitress
from waitress.server import create_server
from waitress.task import ThreadedTaskDispatcher

from receiver.app import MAX_BODY_BYTES, Settings, create_app
from receiver.connections import ConnectionLimits, guard
from receiver.contract.addresses import in_networks, parse_address
from receiver.contract.config import ConfigError
from receiver.http_errors import install as install_http_errors
from receiver.log import LogLockedError

log = logging.getLogger("clickledger.server")

# waitress degrades when connections exceed its threads (see docs/benchmarks.md), so the
# default leaves room for a burst of 64 concurrent senders.
DEFAULT_THREADS = 64


def waitress_options(threads: int) -> dict[str, Any]:
    return {
        "threads": threads,
        "connection_limit": max(256, threads * 4),
        "backlog": 2048,
        "channel_timeout": 30,  # idle or slow clients are dropped after 30 s
        "cleanup_interval": 10,
        "max_request_header_size": 64 * 1024,
        # Far above the app's own limit: waitress spools large bodies to a temp file and the app
        # reads at most MAX_BODY_BYTES + 1 of them, so an oversized body still gets a logged 413.
        # (At this limit waitress answers 413 itself: receiver.http_errors logs that one too.)
        "max_request_body_size": 64 * MAX_BODY_BYTES,
        "ident": "clickledger",
        # The app decides which proxies to trust (config trusted_proxies), so it must see
        # X-Forwarded-For: waitress would otherwise strip it, trusting no proxy of its own.
        "clear_untrusted_proxy_headers": False,
        "asyncore_use_poll": True,
    }


def serve(data_dir: Path, host: str = "127.0.0.1", port: int = 8080, threads: int = DEFAULT_THREADS,
          max_queue: int | None = None, limits: ConnectionLimits | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C. Past `max_queue` waiting requests (default: 2 per thread)
    the app answers 503 `overloaded` at once, so a burst is shed instead of queued without bound.
    `limits` keep slow clients from holding every connection (receiver.connections; default:
    a 10 s deadline for a request head, and shedding the oldest waiting connections near the
    connection limit)."""
    # waitress warns about its task queue on nearly every request under load; that costs CPU.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    dispatcher = ThreadedTaskDispatcher()  # ours, so the app can read its queue depth
    dispatcher.set_thread_count(threads)
    max_queue = 2 * threads if max_queue is None else max_queue
    try:
        app = create_app(Settings(Path(data_dir), max_queue=max_queue),
                         queue_depth=lambda: len(dispatcher.queue))
    except (ConfigError, LogLockedError) as exc:
        print(f"clickledger: {exc}", file=sys.stderr)
        return 2
    server = create_server(app, host=host, port=port, _dispatcher=dispatcher, **waitress_options(threads))
    install_http_errors(server, app.receiver)  # what waitress refuses itself is logged too
    receiver = app.receiver
    guard_counts = guard(server, limits or ConnectionLimits(),
                         # a proxy's clients all share its address: the per-address cap never counts it
                         exempt=lambda address: in_networks(parse_address(address), receiver.config.trusted_proxies))
    receiver.metrics.attach_server(server, guard_counts)  # open connections, slow ones closed: /metrics

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    actual_port = server.effective_port  # type: ignore[attr-defined]
    print(app.receiver.index_summary, flush=True)
    print(f"clickledger receiver on http://{host}:{actual_port} (data: {data_dir}, threads: {threads}, "
          f"max queue: {max_queue})",
          flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        app.receiver.close()
    return 0


__all__ = ["DEFAULT_THREADS", "serve", "waitress", "waitress_options"]
