"""The deployment files of docs/deploy/ agree with each other, with the CLI and with
docs/deployment.md (issue 15); nginx itself accepts its config. The slow test
tests/reliability/test_deployment_nginx.py runs them."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from clickledger.cli import build_parser
from tests.support.paths import REPO
from tests.support.proxy import NGINX_CONF, missing_tools, prepare_nginx, self_signed_certificate

DEPLOY = REPO / "docs" / "deploy"
UNIT = DEPLOY / "clickledger.service"
SCRAPE = DEPLOY / "prometheus.yml"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_the_unit_restarts_the_receiver_whatever_ends_it() -> None:
    service = unit()["Service"]
    assert service["Restart"] == "always"
    assert unit()["Unit"]["StartLimitIntervalSec"] == "0"  # never gives up restarting
    assert service["KillSignal"] == "SIGTERM"  # the receiver's clean stop


def test_the_unit_runs_a_serve_command_the_cli_accepts_where_nginx_and_prometheus_look() -> None:
    argv = shlex.split(unit()["Service"]["ExecStart"])
    assert argv[0].endswith("/clickledger")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve"
    assert (args.host, args.port) == ("127.0.0.1", 8080)  # loopback: only nginx and Prometheus reach it
    assert str(args.data) in unit()["Service"]["ReadWritePaths"].split()
    address = f"{args.host}:{args.port}"
    assert f"server {address};" in NGINX_CONF.read_text(encoding="utf-8")
    assert f'targets: ["{address}"]' in SCRAPE.read_text(encoding="utf-8")
    assert "metrics_path: /metrics" in SCRAPE.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", [NGINX_CONF, UNIT, SCRAPE], ids=lambda p: p.name)
def test_docs_deployment_shows_each_shipped_file_as_it_is(path: Path) -> None:
    """docs/deployment.md shows the proxy, the service unit and the scrape config together:
    each exactly as shipped, so the page and the files cannot drift apart."""
    page = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    assert path.read_text(encoding="utf-8").strip() in page


def test_nginx_accepts_the_shipped_config(tmp_path: Path) -> None:
    if missing_tools():
        pytest.skip(missing_tools())
    cert, key = self_signed_certificate(tmp_path / "tls")
    conf = prepare_nginx(tmp_path, 8443, 8080, cert, key)  # raises with nginx's message if refused
    assert "listen 127.0.0.1:8443 ssl;" in conf.read_text(encoding="utf-8")
