"""The `clickledger` command line as a new user meets it: init, serve without a config or on
published keys, demo over a directory it did not make, --help, notebook options, and the
data/demo hint."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import requests

from clickledger.cli import (
    DEFAULT_DATA,
    NOTEBOOK_OPTIONS,
    build_parser,
    is_loopback,
    main,
    notebook_command,
    notebooks_dir,
)
from clickledger.demo import (
    DEMO_CONFIG,
    DEMO_MARKER,
    demo_dir_refusal,
    free_port,
    holds_unedited_demo_config,
    published_credentials,
    run_demo,
    stop_receiver,
    wait_healthy,
    write_demo_config,
)
from pipeline.fx import read_fx_rates
from receiver.contract.config_file import (
    TABLE_KEYS as _TABLE_KEYS,
)
from receiver.contract.config_file import (
    TOP_KEYS as _TOP_KEYS,
)
from receiver.contract.config_file import (
    load_config,
    parse_config,
)
from receiver.contract.framing import iter_log
from tests.support.paths import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
DEMO_SECRETS = [p["api_key"] for p in tomllib.loads(DEMO_CONFIG.format(public_url="http://x.example"))["partners"]
                if "api_key" in p] + [u["token"] for u in tomllib.loads(
                    DEMO_CONFIG.format(public_url="http://x.example"))["users"]]


def clickledger(*args: str, cwd: Path = REPO, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process: a command that wrongly starts serving fails by timeout, not by
    hanging the suite."""
    return subprocess.run([sys.executable, "-m", "clickledger.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


def starter_secrets(text: str) -> list[str]:
    """The generated values of a starter config: api keys and tokens, and the commented secret."""
    raw = tomllib.loads(text)
    values = [p["api_key"] for p in raw["partners"]] + [u["token"] for u in raw["users"]]
    values += re.findall(r'^# signing_secret = "([^"]+)"', text, flags=re.M)
    return values


# ---------------------------------------------------------------- 5: init and serve


def test_serve_without_a_config_exits_2_says_how_to_make_one_and_writes_nothing(tmp_path: Path) -> None:
    nowhere = tmp_path / "nope"
    done = clickledger("serve", "--data", str(nowhere), "--port", "0")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"clickledger init --data {nowhere}" in done.stderr
    assert "config.toml: file not found" in done.stderr
    assert not nowhere.exists()  # no demo config (and its published keys) written behind the user's back


def test_init_writes_a_commented_starter_config_that_the_receiver_accepts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "mine"
    assert main(["init", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {data / 'config.toml'}" in out and f"next: clickledger serve --data {data}" in out
    path = data / "config.toml"
    config = load_config(path)
    assert [len(getattr(config, t)) for t in ("partners", "offers", "links", "products", "users")] == [1] * 5
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds secrets
    text = path.read_text(encoding="utf-8")
    # every key the config knows is there, set or (when optional) commented out, and explained
    for key in _TOP_KEYS | set().union(*(required | optional for required, optional in _TABLE_KEYS.values())):
        assert re.search(rf"\b{key}\b", text), key
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\w+ = ", line):
            explained = "#" in line or lines[i + 1].strip().startswith("# ^") or lines[i - 1].startswith("#")
            assert explained, f"line {i + 1} has no comment: {line}"
    for table in ("partners", "offers", "links", "products", "users"):
        assert re.search(rf"^# .*\n\[\[{table}\]\]", text, flags=re.M), f"[[{table}]] has no comment above it"
    # the fx rates file is one the pipeline reads (no rates yet: the offer is in the base currency)
    assert read_fx_rates(data / "fx_rates.csv").is_empty()


def test_the_starter_keys_are_fresh_and_never_published(tmp_path: Path) -> None:
    texts = []
    for name in ("a", "b"):
        assert main(["init", "--data", str(tmp_path / name)]) == 0
        texts.append((tmp_path / name / "config.toml").read_text(encoding="utf-8"))
    first, second = (starter_secrets(t) for t in texts)
    assert len(first) == 3 and not set(first) & set(second)
    for value in first:
        assert len(value) >= 40 and value not in README and value not in DEMO_CONFIG
    for published in DEMO_SECRETS:
        assert published not in texts[0]
    assert published_credentials(parse_config(texts[0])) == []
    secret = re.search(r'^# (signing_secret = "[^"]+")', texts[0], flags=re.M).group(1)
    assert parse_config(texts[0].replace(f"# {secret}", secret)).partners["advertiser1"].signing_secret


def test_init_keeps_an_existing_config_unless_forced(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--data", str(tmp_path)]) == 0
    before = (tmp_path / "config.toml").read_text(encoding="utf-8")
    (tmp_path / "fx_rates.csv").write_text("date,currency,rate\n2026-01-02,EUR,1.1\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["init", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err
    assert (tmp_path / "config.toml").read_text(encoding="utf-8") == before
    assert main(["init", "--data", str(tmp_path), "--force"]) == 0
    after = (tmp_path / "config.toml").read_text(encoding="utf-8")
    assert starter_secrets(after) != starter_secrets(before)
    kept = list(tmp_path.glob("config.toml.replaced-*"))
    assert len(kept) == 1 and kept[0].read_text(encoding="utf-8") == before
    assert "EUR,1.1" in (tmp_path / "fx_rates.csv").read_text(encoding="utf-8")  # never replaced


def test_init_demo_writes_the_published_network_on_purpose(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    assert main(["init", "--demo", "--data", str(data)]) == 0
    assert (data / "config.toml").read_text(encoding="utf-8") == DEMO_CONFIG.format(
        public_url="http://127.0.0.1:8080")
    assert (data / DEMO_MARKER).is_file() and (data / "fx_rates.csv").is_file()
    assert demo_dir_refusal(data) is None


@pytest.mark.server
def test_serve_on_the_initialised_directory(tmp_path: Path) -> None:
    assert main(["init", "--data", str(tmp_path)]) == 0
    port = free_port()
    # not clickledger.demo.start_receiver: `serve` as a user types it, its stderr read as text below
    proc = subprocess.Popen([sys.executable, "-m", "clickledger.cli", "serve", "--data", str(tmp_path),
                             "--port", str(port)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc=proc)
        answer = requests.get(f"http://127.0.0.1:{port}/t/offer1-affiliate1", allow_redirects=False, timeout=5)
        assert answer.status_code == 302
        assert answer.headers["location"].startswith("https://advertiser.example/landing?click_id=")
    finally:
        stop_receiver(proc)
        _, err = proc.communicate(timeout=5)
    assert "demo network" not in err


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", ""])
def test_serve_refuses_the_published_demo_keys_beyond_loopback(tmp_path: Path, host: str) -> None:
    write_demo_config(tmp_path)
    done = clickledger("serve", "--data", str(tmp_path), "--host", host, "--port", "0")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing" in done.stderr and "published in the README" in done.stderr
    assert "partner 'acme' api key" in done.stderr and "clickledger init" in done.stderr
    assert not (tmp_path / "log").exists()


def test_published_keys_are_recognised_also_as_hashes(tmp_path: Path) -> None:
    text = DEMO_CONFIG.format(public_url="http://127.0.0.1:8080").replace(
        'api_key = "sp_live_acme"',
        f'api_key_sha256 = "{hashlib.sha256(b"sp_live_acme").hexdigest()}"')
    found = published_credentials(parse_config(text))
    assert "partner 'acme' api key" in found and "user 'u1' token" in found


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True), ("LOCALHOST", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.168.1.5", False), ("example.com", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# ---------------------------------------------------------------- 6 and 7: demo


def foreign_dir(path: Path) -> dict[str, bytes]:
    """A data directory a user made by hand: config, a hand-added segment, a wallet credit."""
    assert main(["init", "--data", str(path)]) == 0
    (path / "log").mkdir()
    (path / "log" / "segment-00000001.ndjson").write_bytes(b'{"hand": "added segment"}\n')
    (path / "ledger").mkdir()
    (path / "ledger" / "wallet_credits.ndjson").write_bytes(b'{"hand": "added credit"}\n')
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_demo_refuses_a_directory_it_did_not_create(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    files = foreign_dir(tmp_path)
    capsys.readouterr()
    assert main(["demo", "--data", str(tmp_path), "--clicks", "20", "--history-days", "0"]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "log/" in err and "ledger/" in err and DEMO_MARKER in err
    assert {str(p.relative_to(tmp_path)): p.read_bytes() for p in sorted(tmp_path.rglob("*"))
            if p.is_file()} == files  # nothing removed, nothing written


def test_demo_takes_a_new_empty_or_marked_directory_and_never_a_file(tmp_path: Path) -> None:
    assert demo_dir_refusal(tmp_path / "new") is None
    assert demo_dir_refusal(tmp_path) is None  # empty
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    assert "notes.txt" in (demo_dir_refusal(tmp_path) or "")
    (tmp_path / DEMO_MARKER).write_text("", encoding="utf-8")
    assert demo_dir_refusal(tmp_path) is None
    assert "not a directory" in (demo_dir_refusal(tmp_path / "notes.txt") or "")
    assert run_demo(tmp_path / "notes.txt", force=True, clicks=5, history_days=0) == 2
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_demo_takes_over_a_demo_directory_made_before_the_marker(tmp_path: Path) -> None:
    """`make demo` of an earlier version left data/demo with the demo config (its temporary
    port as public_url) and no marker: that is still the demo's own directory."""
    write_demo_config(tmp_path, public_url="http://127.0.0.1:41234")
    (tmp_path / "log").mkdir()
    assert holds_unedited_demo_config(tmp_path)
    assert demo_dir_refusal(tmp_path) is None
    config = tmp_path / "config.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('id = "u3"', 'id = "mine"'), encoding="utf-8")
    assert not holds_unedited_demo_config(tmp_path)  # an edited config is the user's
    assert demo_dir_refusal(tmp_path) is not None


@pytest.fixture(scope="module")
def forced_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`clickledger demo --force` over a foreign directory (a small day, no history)."""
    data = tmp_path_factory.mktemp("foreign")
    foreign_dir(data)
    done = clickledger("demo", "--data", str(data), "--force", "--clicks", "30", "--history-days", "0",
                       timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return data, done.stdout


@pytest.mark.server
def test_demo_with_force_removes_and_lists_what_it_removes(forced_demo: tuple[Path, str]) -> None:
    data, out = forced_demo
    assert f"removed {data / 'log'}/ (1 file)" in out
    assert f"removed {data / 'ledger'}/ (1 file)" in out
    assert "index" not in out.split("receiver up")[0]  # only what existed is listed
    assert b"hand" not in b"".join(p.read_bytes() for p in (data / "log").glob("*.ndjson"))
    assert b"hand" not in (data / "ledger" / "wallet_credits.ndjson").read_bytes()
    assert (data / DEMO_MARKER).is_file() and demo_dir_refusal(data) is None  # the demo's own now


@pytest.mark.server
def test_the_demo_config_names_the_address_make_serve_serves(forced_demo: tuple[Path, str]) -> None:
    data, out = forced_demo
    assert load_config(data / "config.toml").public_url == "http://127.0.0.1:8080"
    # the simulator still sent today's earn postbacks to the demo's temporary receiver
    earn = [r for r in iter_log(data / "log")
            if r["path"] == "/api/v1/earn/postback" and r["result"] == "recorded"]
    assert earn
    note = next(line for line in out.splitlines() if "earn clicks carried a postback_url" in line)
    assert "http://127.0.0.1:8080" in note and "as expected" in note


# ---------------------------------------------------------------- 8: help, notebook, data/demo


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_has_a_description_and_every_option_help_and_its_default() -> None:
    commands = subcommands()
    assert {"init", "serve", "simulate", "demo", "notebook", "run", "credit", "reconcile"} <= set(commands)
    for name, parser in commands.items():
        assert parser.description and len(parser.description) > 40, name
        text = parser.format_help()
        assert parser.description.split()[0] in text
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help.strip(), f"{name} {action.dest}: no help"
            default = action.default
            if action.option_strings and default not in (None, False, []):
                shown = re.sub(r"\s+", " ", text)
                assert f"(default: {default})" in shown or "(default:" in action.help, (
                    f"{name} {action.option_strings[0]}: default {default!r} not shown")


def notebook_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["notebook", *argv])


def test_notebook_passes_the_documented_options_after_the_double_dash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":0")
    statement = tmp_path / "acme.csv"
    statement.write_text("click_id,amount\n", encoding="utf-8")
    command = notebook_command(notebook_args("reconciliation", "--data", str(tmp_path), "--partner", "acme",
                                             "--statement", str(statement)))
    assert command[:4] == [sys.executable, "-m", "marimo", "run"]
    assert command[4] == str(notebooks_dir() / "reconciliation.py")
    after = command[command.index("--") + 1:]
    assert after == ["--data", str(tmp_path.resolve()), "--partner", "acme", "--statement", str(statement.resolve())]
    assert "--headless" not in command
    command = notebook_command(notebook_args("troubleshooting", "--click", "3f2a"))
    assert command[command.index("--") + 1:] == ["--data", str(Path("data/demo").resolve()),
                                                 "--click", "3f2a"]


def test_notebook_refuses_an_option_its_notebook_does_not_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not read --partner"):
        notebook_command(notebook_args("overview", "--partner", "acme"))
    with pytest.raises(ValueError, match="troubleshooting notebook does"):
        notebook_command(notebook_args("reconciliation", "--click", "x"))
    with pytest.raises(ValueError, match="no such file"):
        notebook_command(notebook_args("reconciliation", "--statement", str(tmp_path / "none.csv")))
    with pytest.raises(ValueError, match="no notebook 'nope'"):
        notebook_command(notebook_args("nope"))
    assert main(["notebook", "overview", "--click", "x"]) == 2


def test_notebook_is_headless_without_a_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert "--headless" in notebook_command(notebook_args("overview"))
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert "--headless" not in notebook_command(notebook_args("overview"))
    assert "--headless" in notebook_command(notebook_args("overview", "--headless"))


def test_the_notebook_options_are_the_ones_each_notebook_reads() -> None:
    notebooks = {p.stem for p in notebooks_dir().glob("*.py") if not p.name.startswith("_")}
    assert notebooks == set(NOTEBOOK_OPTIONS)
    for name in notebooks:
        source = (notebooks_dir() / f"{name}.py").read_text(encoding="utf-8")
        assert set(re.findall(r'cli_arg\("(\w+)"\)', source)) == set(NOTEBOOK_OPTIONS[name]), name
    docs = (REPO / "docs" / "notebooks.md").read_text(encoding="utf-8")
    for name, options in NOTEBOOK_OPTIONS.items():
        for option in options:
            assert re.search(rf"{name}.*--{option}", docs), f"docs/notebooks.md: {name} --{option}"


COMMANDS_WITH_DATA = [["run"], ["credit"], ["reconcile", "--partner", "acme", "--statement", "s.csv"],
                      ["serve", "--port", "0"], ["simulate", "--url", "http://127.0.0.1:9", "--clicks", "5"]]


@pytest.mark.parametrize("argv", COMMANDS_WITH_DATA, ids=lambda a: a[0])
def test_the_default_data_directory_points_to_the_demo_when_that_is_where_the_data_is(
        tmp_path: Path, argv: list[str]) -> None:
    write_demo_config(tmp_path / DEFAULT_DATA / "demo")
    done = clickledger(*argv, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"did you mean\n  clickledger {' '.join(argv)} --data data/demo" in done.stderr
    assert not (tmp_path / DEFAULT_DATA / "config.toml").exists()


def test_without_a_demo_the_hint_is_how_to_make_a_config(tmp_path: Path) -> None:
    done = clickledger("run", cwd=tmp_path)
    assert done.returncode == 2
    assert "data/config.toml: file not found" in done.stderr and "clickledger init --data data" in done.stderr
    assert "did you mean" not in done.stderr


@pytest.mark.server
def test_the_demo_forwards_to_its_publisher(forced_demo: tuple[Path, str]) -> None:
    """Issue 14: `make demo` runs the forwarder and shows the deliveries its local sink received."""
    data, out = forced_demo
    line = next(line for line in out.splitlines() if line.startswith("forwarder: "))
    told = re.match(r"forwarder: (\d+) deliveries .* \(delivered (\d+)\); it received (\d+) requests, (\d+) with "
                    r"a valid signature", line)
    assert told, line
    deliveries, delivered, received, signed = map(int, told.groups())
    assert deliveries > 0 and delivered == deliveries and signed == received >= deliveries
    assert "webhook-id dlv_" in out
    config = load_config(data / "config.toml")
    assert config.allow_private_targets and set(config.affiliates) == {"aff1", "aff2"}
    assert (data / "ledger" / "deliveries.ndjson").stat().st_size > 0
