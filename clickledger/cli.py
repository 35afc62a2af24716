"""`clickledger`: the command line of the receiver and the pipeline.

Each subcommand lives with the code it drives; this module only wires them up.
Pipeline commands are imported lazily so `serve` never loads Polars or DuckDB.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

from receiver.contract.datadir import DataDir

DEFAULT_DATA = Path("data")
DEMO_DATA = DEFAULT_DATA / "demo"  # where `make demo` puts the demo network


def notebooks_dir() -> Path:
    """Where the notebooks are: they ship inside the package (pyproject maps the top-level
    notebooks/ folder to clickledger.notebooks), so a checkout and an installed clickledger
    find them from any working directory."""
    import clickledger.notebooks

    return Path(clickledger.notebooks.__file__).resolve().parent
# The arguments each notebook reads after `--` (pipeline.notebook_support.cli_arg), as
# docs/notebooks.md documents them; --data is passed to every notebook.
NOTEBOOK_OPTIONS: dict[str, tuple[str, ...]] = {
    "reconciliation": ("partner", "statement"),
    "troubleshooting": ("click",),
    "overview": (),
}
LOOPBACK_NAMES = ("localhost",)


class HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default after its help, unless it has none or the help names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text or default is None or default is False
                or default is argparse.SUPPRESS or default == []):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """clickledger's parser and every subcommand's: defaults shown in --help."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


# ---------------------------------------------------------------- the data directory


def _argv_with_data(argv: list[str], data_dir: Path) -> str:
    """The command line the user typed, with --data replaced by `data_dir`."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--data":
            skip = True
        elif not token.startswith("--data="):
            kept.append(token)
    return shlex.join(["clickledger", *kept, "--data", str(data_dir)])


def config_missing(data_dir: Path, command: str, argv: list[str]) -> str | None:
    """What to say when DATA/config.toml does not exist (None when it does): `--data data/demo`
    when the default directory was meant and `make demo` made data/demo, else how to make one."""
    path = DataDir(data_dir).config_path
    if path.is_file():
        return None
    message = f"clickledger {command}: {path}: file not found."
    if Path(data_dir) == DEFAULT_DATA and DataDir(DEMO_DATA).config_path.is_file():
        return (f"{message} `make demo` put its network in {DEMO_DATA}; did you mean\n"
                f"  {_argv_with_data(argv, DEMO_DATA)}")
    return (f"{message} --data names the directory the receiver serves (config.toml, log/).\n"
            f"Make a config with freshly generated keys:\n"
            f"  clickledger init --data {shlex.quote(str(data_dir))}\n"
            f"or, to try clickledger on this machine, the demo network: "
            f"clickledger init --demo --data {shlex.quote(str(data_dir))}")


def is_loopback(host: str) -> bool:
    """Whether a server bound to `host` is reachable from this machine only."""
    from receiver.contract.addresses import parse_address

    if host.strip().lower() in LOOPBACK_NAMES:
        return True
    address = parse_address(host)
    return address is not None and address.is_loopback


# ---------------------------------------------------------------- commands


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _serve(args: argparse.Namespace) -> int:
    from clickledger.demo import published_credentials
    from receiver.contract.config import ConfigError
    from receiver.contract.config_file import load_config
    from receiver.server import serve

    config_path = DataDir(args.data).config_path
    try:
        published = published_credentials(load_config(config_path))
    except ConfigError as exc:
        print(f"clickledger: {exc}", file=sys.stderr)
        return 2
    if published:
        if not is_loopback(args.host):
            # Anyone who read the README could post conversions and credit wallets.
            print(f"clickledger serve: refusing to serve on {args.host or 'every address'}: "
                  f"{config_path} holds the demo network's keys, published in the README "
                  f"({', '.join(published)}). Serve it on 127.0.0.1, or make a config with freshly "
                  f"generated keys: clickledger init --data DIR", file=sys.stderr)
            return 2
        print(f"note: {config_path} holds {len(published)} keys of the demo network, published in "
              f"the README: served on {args.host} only (refused on other addresses; "
              f"`clickledger init` makes fresh keys)", file=sys.stderr)
    from receiver.connections import ConnectionLimits

    limits = ConnectionLimits(head_timeout=args.head_timeout, max_per_address=args.max_connections_per_address)
    return serve(args.data, args.host, args.port, args.threads, args.max_queue, limits)


def _init(args: argparse.Namespace) -> int:
    from clickledger.starter import init_data_dir

    return init_data_dir(args.data, demo=args.demo, force=args.force)


def _iso_date(text: str) -> date:
    """An argparse type: a YYYY-MM-DD day (argparse answers a bad one with exit 2 and this message)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day as YYYY-MM-DD") from None


def _simulate(args: argparse.Namespace) -> int:
    if args.offline:
        if args.out is None or args.events is None:
            print("clickledger simulate --offline needs --events N and --out DIR", file=sys.stderr)
            return 2
        from clickledger.progress import Progress
        from clickledger.simulator.offline import generate_log
        from receiver.log import LogLockedError

        try:
            with Progress() as shown:
                summary = generate_log(args.out, args.events, seed=args.seed, append=args.append, mix=args.mix,
                                       end=args.end, days=args.days, compress=not args.plain,
                                       progress=lambda done, total: shown.update(done, total, "writing", "events"))
        except (FileExistsError, LogLockedError, ValueError) as exc:
            print(f"clickledger simulate: {exc}", file=sys.stderr)
            return 2
        print(summary.describe())
        return 0
    if args.url is None:
        print("clickledger simulate needs --url (or --offline to write a log directly)", file=sys.stderr)
        return 2
    from clickledger.simulator.run import main as simulate_main

    return simulate_main(args)


def _demo(args: argparse.Namespace) -> int:
    from clickledger.demo import run_demo

    return run_demo(args.data, port=args.port, clicks=args.clicks, seed=args.seed,
                    history_days=args.history_days, force=args.force)


def has_display() -> bool:
    """Whether a browser can open a window here (macOS and Windows need no display variable)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def notebook_command(args: argparse.Namespace) -> list[str]:
    """The `marimo run` command line of `clickledger notebook`; ValueError says what is wrong."""
    path = notebooks_dir() / f"{args.name}.py"
    if not path.is_file():
        names = sorted(p.stem for p in notebooks_dir().glob("*.py") if not p.name.startswith("_"))
        raise ValueError(f"no notebook {args.name!r} (have: {', '.join(names) or 'none'})")
    reads = NOTEBOOK_OPTIONS.get(args.name, ())
    passed = [name for name in ("partner", "statement", "click") if getattr(args, name) is not None]
    for name in passed:
        if name not in reads:
            takers = " or ".join(n for n, opts in NOTEBOOK_OPTIONS.items() if name in opts)
            raise ValueError(f"the {args.name} notebook does not read --{name} (the {takers} "
                             f"notebook does)")
    command = [sys.executable, "-m", "marimo", "run", str(path), "--host", args.host,
               "--port", str(args.port)]
    if args.headless or not has_display():
        command.append("--headless")
    command += ["--", "--data", str(Path(args.data).resolve())]
    for name in passed:
        value = getattr(args, name)
        if name == "statement":
            statement = Path(value).expanduser()
            if not statement.is_file():
                raise ValueError(f"--statement {value}: no such file")
            value = str(statement.resolve())  # marimo's working directory may differ from ours
        command += [f"--{name}", value]
    return command


def _notebook(args: argparse.Namespace) -> int:
    """Run a notebook as an app with `marimo run`, over the chosen data directory."""
    import subprocess

    try:
        command = notebook_command(args)
    except ValueError as exc:
        print(f"clickledger notebook: {exc}", file=sys.stderr)
        return 2
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"clickledger notebook: {args.name} at http://{host}:{args.port} "
          f"(open it in a browser; Ctrl-C stops it)", flush=True)
    return subprocess.call(command)


# ---------------------------------------------------------------- the parser


def add_data_option(p: argparse.ArgumentParser, default: Path, what: str) -> None:
    """--data DIR, as every command that reads or writes a data directory spells it."""
    p.add_argument("--data", type=Path, default=default, metavar="DIR", help=what)


def add_command(sub: argparse._SubParsersAction, name: str, summary: str, description: str,
                func: Callable[[argparse.Namespace], int],
                config_of: Callable[[argparse.Namespace], Path | None] | None = None,
                ) -> argparse.ArgumentParser:
    """A subcommand: `summary` in clickledger's list, `description` atop its own --help.
    `config_of(args)` names the data directory whose config.toml the command needs."""
    p = sub.add_parser(name, help=summary, description=description)
    p.set_defaults(func=func, config_of=config_of)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="clickledger", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)

    p = add_command(
        sub, "init", "write a starter config.toml with fresh random keys (and fx_rates.csv)",
        "Write DATA/config.toml: one partner, offer, tracking link, earn product and user, every "
        "key commented, with freshly generated api key and user token; and DATA/fx_rates.csv when "
        "there is none. An existing config.toml is kept unless --force.", _init)
    add_data_option(p, DEFAULT_DATA, "the data directory to write config.toml and fx_rates.csv into")
    p.add_argument("--force", action="store_true",
                   help="replace an existing config.toml (the old one is moved aside, not deleted)")
    p.add_argument("--demo", action="store_true",
                   help="write the demo network instead, whose keys are published in the README "
                        "(what `make serve` serves on 127.0.0.1)")

    p = add_command(
        sub, "serve", "run the receiver (waitress) over a data directory",
        "Serve clicks and postbacks over DATA/config.toml, appending every request to DATA/log/. "
        "Without a config.toml it stops and says how to make one (clickledger init). It refuses "
        "the demo network's published keys on any address but loopback.",
        _serve, lambda a: a.data)
    add_data_option(p, DEFAULT_DATA, "the data directory (config.toml, log/)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (0 picks a free one)")
    from receiver.server import DEFAULT_THREADS

    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="worker threads")
    p.add_argument("--max-queue", type=int, default=None,
                   help="requests waiting for a thread before new ones get 503 (default: 2 x threads)")
    p.add_argument("--head-timeout", type=_positive_seconds, default=10.0, metavar="SECONDS",
                   help="a connection's whole request head must arrive within this many seconds, "
                        "however steadily it trickles (slow clients: docs/deployment.md)")
    p.add_argument("--max-connections-per-address", type=_positive_int, default=None, metavar="N",
                   help="close connections from one address past N (trusted_proxies exempt; default: no cap)")

    p = add_command(
        sub, "simulate", "send realistic clicks and postbacks to a running receiver "
        "(or, with --offline, write such a log directly)",
        "Plan a day of traffic from DATA/config.toml (every dialect, mistakes included) and send "
        "it to the receiver at --url, then print what was sent and answered. With --offline, "
        "write such a log straight into --out/log instead (for benchmarks).",
        _simulate, lambda a: a.data if a.url and not a.offline else None)
    p.add_argument("--url", help="the running receiver, e.g. http://127.0.0.1:8080")
    p.add_argument("--offline", action="store_true",
                   help="write --events records straight into --out/log (no receiver, no HTTP)")
    p.add_argument("--events", type=int, help="with --offline: how many log records to write")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="with --offline: the data directory to create or extend")
    p.add_argument("--append", action="store_true",
                   help="with --offline: continue an existing log in a new segment, as a restarted receiver")
    p.add_argument("--mix", choices=("all", "earn", "clicks"), default="all",
                   help="with --offline: all traffic, only the earn app's (for the credit job), "
                        "or only recorded clicks (for the start-up bench)")
    p.add_argument("--days", type=int, default=None,
                   help="with --offline: spread the events over this many days (default: 90, or 1 with --append)")
    p.add_argument("--end", type=_iso_date, default=None, metavar="YYYY-MM-DD",
                   help="with --offline: the last day of a new log (default: today, UTC)")
    p.add_argument("--plain", action="store_true",
                   help="with --offline: leave the segments plain (by default each is compressed once "
                        "written, as the receiver compresses sealed segments)")
    add_data_option(p, DEFAULT_DATA, "data directory whose config.toml (partners, keys) to use")
    p.add_argument("--clicks", type=int, default=500, help="clicks to plan (postbacks follow them)")
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed plans the same traffic")

    p = add_command(
        sub, "demo", "create the demo network in data/demo, serve it, simulate traffic, and stop",
        "Write the demo network (one partner per seed system) into --data, send it two weeks of "
        "history and today's traffic through a temporary receiver, then run the pipeline and the "
        "credit job. It replaces the data of a directory it made before (marked by "
        ".clickledger-demo) and lists what it removes; any other non-empty directory needs --force.",
        _demo)
    add_data_option(p, DEMO_DATA, "the demo's data directory")
    p.add_argument("--force", action="store_true",
                   help="replace log/, index/, warehouse/, ledger/ and the config of a directory "
                        "the demo did not make")
    p.add_argument("--port", type=int, default=0, help="port of the temporary receiver (0 picks a free one)")
    p.add_argument("--clicks", type=int, default=250, help="clicks per day")
    p.add_argument("--history-days", type=int, default=13,
                   help="days of history before today, sent in-process with a simulated clock")
    p.add_argument("--seed", type=int, default=7, help="random seed of the simulated traffic")

    p = add_command(
        sub, "notebook", "open a notebook as an app (marimo run)",
        "Run one of the notebooks (reconciliation, troubleshooting, overview) as an app with "
        "`marimo run` over --data, and print the URL to open. No browser is started where there "
        "is no display (or with --headless).", _notebook)
    p.add_argument("name", help="the notebook: " + ", ".join(NOTEBOOK_OPTIONS))
    add_data_option(p, DEMO_DATA, "the data directory the notebook opens")
    p.add_argument("--host", default="127.0.0.1", help="address the notebook server listens on")
    p.add_argument("--port", type=int, default=2718, help="port the notebook server listens on")
    p.add_argument("--headless", action="store_true",
                   help="do not open a browser (the default where there is no DISPLAY or WAYLAND_DISPLAY)")
    p.add_argument("--partner", metavar="ID", help="reconciliation: the partner to preselect")
    p.add_argument("--statement", metavar="FILE", help="reconciliation: the partner's CSV statement to load")
    p.add_argument("--click", metavar="ID",
                   help="troubleshooting: a click id or transaction id (or part of one) whose story to open")

    # The pipeline's batch commands (run, credit, reconcile) import Polars and DuckDB only when run.
    from clickledger import pipeline_cli

    pipeline_cli.register(sub)
    from clickledger import partner_cli

    partner_cli.register(sub)

    from clickledger import forward_cli

    forward_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    data_dir = args.config_of(args) if getattr(args, "config_of", None) else None
    if data_dir is not None and (problem := config_missing(data_dir, args.command, argv)):
        print(problem, file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
