"""A real receiver process (`python -m clickledger.cli serve`, waitress) on a free loopback port.

It is started and stopped with the demo's own functions (clickledger.demo: free_port,
start_receiver, wait_healthy, stop_receiver), as `make demo` and the benchmarks start theirs.
The `live_server` fixture (tests/conftest.py) shares one per test module; tests that need a
server of their own (another config, more threads) call `start_live_server` themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from subprocess import Popen
from typing import Any

from clickledger.demo import (
    free_port,
    start_receiver,
    stop_receiver,
    wait_healthy,
    write_demo_config,
)
from tests.support.harness import read_log


class LiveServer(str):
    """The base URL of a running receiver (a str), with its data dir and process."""

    data_dir: Path
    proc: Popen

    def __new__(cls, url: str, data_dir: Path, proc: Popen) -> LiveServer:
        obj = super().__new__(cls, url)
        obj.data_dir = data_dir
        obj.proc = proc
        return obj

    @property
    def url(self) -> str:
        return str(self)

    def records(self) -> list[dict[str, Any]]:
        return read_log(self.data_dir)


def start_live_server(data_dir: Path, write_config: Callable[[Path, str], None] | None = None,
                      threads: int = 8, attempts: int = 3) -> LiveServer:
    """Start a receiver over `data_dir` on a free loopback port and wait for /healthz.

    `write_config(data_dir, base_url)` writes DATA/config.toml once the port is known
    (the demo config by default, with public_url pointing at this server). The server's
    stderr goes to a file next to DATA, never to an unread pipe that could fill up, and its
    tail is in the error when the server does not start.
    """
    write_config = write_config or (lambda d, url: write_demo_config(d, public_url=url))
    data_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = data_dir.parent / f"{data_dir.name}-server.stderr"
    why = "no attempt"
    for _ in range(attempts):  # another process may grab the free port first: try a new one
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        write_config(data_dir, url)
        with open(stderr_path, "wb") as stderr:
            proc = start_receiver(data_dir, port, threads=threads, stderr=stderr)
        try:
            wait_healthy(url, timeout=20, proc=proc)
        except RuntimeError as exc:
            why = str(exc)
            stop_receiver(proc)
            continue
        return LiveServer(url, data_dir, proc)
    raise RuntimeError(f"the receiver did not start ({why}): "
                       f"{stderr_path.read_text(errors='replace')[-2000:]}")


def stop_live_server(server: LiveServer) -> None:
    stop_receiver(server.proc)
    assert server.proc.returncode is not None
