"""The shipped nginx config (docs/deploy/nginx.conf), started on loopback in front of a receiver.

`start_nginx` rewrites only what a test machine must change (listening port, upstream port,
certificate, pid, log and temporary paths, the worker user), each rewrite checked to apply
exactly once so the test breaks if the shipped file drifts, and runs Debian's nginx binary
in the foreground; `stop_nginx` ends that process. `self_signed_certificate` makes a
certificate for localhost with the openssl command.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import REPO

NGINX_CONF = REPO / "docs" / "deploy" / "nginx.conf"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).is_file()), None)


def missing_tools() -> str | None:
    """Why the proxy cannot be tested here (no nginx, or no openssl for its certificate), or None."""
    missing = [name for name, found in (("nginx", nginx_binary()), ("openssl", shutil.which("openssl"))) if not found]
    return f"no {' and no '.join(missing)} on this machine (apt-get install nginx openssl)" if missing else None


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for CN=localhost, valid one day, made with `openssl req -x509`."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _replace_once(text: str, old: str, new: str) -> str:
    count = text.count(old)
    if count != 1:
        raise AssertionError(f"docs/deploy/nginx.conf: expected {old!r} once, found it {count} times")
    return text.replace(old, new)


@dataclass
class Nginx:
    proc: subprocess.Popen
    port: int
    folder: Path

    @property
    def access_log(self) -> Path:
        return self.folder / "logs" / "clickledger.access.log"

    @property
    def error_log(self) -> Path:
        return self.folder / "logs" / "error.log"


def rewritten_config(folder: Path, listen_port: int, upstream_port: int, cert: Path, key: Path) -> str:
    text = NGINX_CONF.read_text(encoding="utf-8")
    logs = folder / "logs"
    for old, new in (
        # the test's own user runs the workers, so they can use its temporary folders (as root,
        # nginx would otherwise run them as nobody; as another user it ignores the directive)
        ("user www-data;", f"user {pwd.getpwuid(os.geteuid()).pw_name};"),
        ("pid /run/nginx.pid;", f"pid {folder / 'nginx.pid'};"),
        ("error_log /var/log/nginx/error.log warn;", f"error_log {logs / 'error.log'} warn;"),
        ("access_log /var/log/nginx/clickledger.access.log clickledger;",
         f"access_log {logs / 'clickledger.access.log'} clickledger;\n"
         + "".join(f"    {name}_temp_path {folder / 'temp' / name};\n"
                   for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))),
        ("listen 443 ssl;", f"listen 127.0.0.1:{listen_port} ssl;"),
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};"),
        ("ssl_certificate /etc/ssl/clickledger/fullchain.pem;", f"ssl_certificate {cert};"),
        ("ssl_certificate_key /etc/ssl/clickledger/privkey.pem;", f"ssl_certificate_key {key};"),
    ):
        text = _replace_once(text, old, new)
    return text


def prepare_nginx(folder: Path, listen_port: int, upstream_port: int, cert: Path, key: Path) -> Path:
    """Write the rewritten config in `folder` (with its log and temporary folders) and check it
    with `nginx -t`; its path. Raises RuntimeError with nginx's message when nginx refuses it."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("no nginx binary (apt-get install nginx)")
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (folder / "temp" / name).mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(rewritten_config(folder, listen_port, upstream_port, cert, key), encoding="utf-8")
    check = subprocess.run([binary, "-t", "-p", str(folder), "-c", str(conf), "-e", str(folder / "logs" / "error.log")],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t refused the rewritten config: {check.stderr}")
    return conf


def start_nginx(folder: Path, listen_port: int, upstream_port: int, cert: Path, key: Path,
                timeout: float = 15.0) -> Nginx:
    """nginx from the shipped config, in the foreground, listening on 127.0.0.1:`listen_port`."""
    conf = prepare_nginx(folder, listen_port, upstream_port, cert, key)
    binary = nginx_binary() or "nginx"  # prepare_nginx found it
    with open(folder / "logs" / "stderr.log", "wb") as stderr:  # a file, never an unread pipe
        proc = subprocess.Popen([binary, "-p", str(folder), "-c", str(conf), "-e", str(folder / "logs" / "error.log"),
                                 "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {(folder / 'logs' / 'error.log').read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", listen_port), timeout=1):
            return Nginx(proc, listen_port, folder)
        time.sleep(0.1)
    stop_nginx(Nginx(proc, listen_port, folder))
    raise RuntimeError(f"nginx did not listen on 127.0.0.1:{listen_port} within {timeout} s")


def stop_nginx(nginx: Nginx, timeout: float = 15.0) -> None:
    """Stop the nginx this module started (its master process: the workers follow it)."""
    if nginx.proc.poll() is None:
        nginx.proc.terminate()
        try:
            nginx.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            nginx.proc.kill()
            nginx.proc.wait()
