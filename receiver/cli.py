"""`clickledger`: the command line of the receiver and the pipeline.

Each subcommand lives with the code it drives; this module only wires them up.
Pipeline commands are imported lazily so `serve` never loads Polars or DuckDB.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

DEFAULT_DATA = Path("data")


def _serve(args: argparse.Namespace) -> int:
    from receiver.demo import ensure_config
    from receiver.server import serve

    ensure_config(args.data)
    return serve(args.data, args.host, args.port, args.threads, args.max_queue)


def _simulate(args: argparse.Namespace) -> int:
    if args.offline:
        if args.out is None or args.events is None:
            print("clickledger simulate --offline needs --events N and --out DIR", file=sys.stderr)
            return 2
        from receiver.offline import generate_log

        try:
            summary = generate_log(args.out, args.events, seed=args.seed, append=args.append, mix=args.mix)
        except FileExistsError as exc:
            print(f"clickledger simulate: {exc}", file=sys.stderr)
            return 2
        print(summary.describe())
        return 0
    if args.url is None:
        print("clickledger simulate needs --url (or --offline to write a log directly)", file=sys.stderr)
        return 2
    from receiver.simulate import main as simulate_main

    return simulate_main(args)


def _demo(args: argparse.Namespace) -> int:
    from receiver.demo import run_demo

    return run_demo(args.data, port=args.port, clicks=args.clicks, seed=args.seed,
                    history_days=args.history_days)


NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def _notebook(args: argparse.Namespace) -> int:
    """Run a notebook as an app with `marimo run`, over the chosen data directory."""
    import subprocess

    path = NOTEBOOKS_DIR / f"{args.name}.py"
    if not path.is_file():
        names = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.py") if not p.name.startswith("_"))
        print(f"clickledger: no notebook {args.name!r} (have: {', '.join(names) or 'none'})", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "marimo", "run", str(path), "--host", args.host, "--port",
               str(args.port), "--", "--data", str(Path(args.data).resolve())]
    return subprocess.call(command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clickledger", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the receiver (waitress)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data directory (config.toml, log/)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    from receiver.server import DEFAULT_THREADS

    p.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    p.add_argument("--max-queue", type=int, default=None,
                   help="requests waiting for a thread before new ones get 503 (default: 2 x threads)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("simulate", help="send realistic clicks and postbacks to a running receiver "
                       "(or, with --offline, write such a log directly)")
    p.add_argument("--url", help="the receiver, e.g. http://127.0.0.1:8080")
    p.add_argument("--offline", action="store_true",
                   help="write --events records straight into --out/log (no receiver, no HTTP)")
    p.add_argument("--events", type=int, help="with --offline: how many log records to write")
    p.add_argument("--out", type=Path, help="with --offline: the data directory to create or extend")
    p.add_argument("--append", action="store_true",
                   help="with --offline: continue an existing log in a new segment, as a restarted receiver")
    p.add_argument("--mix", choices=("all", "earn", "clicks"), default="all",
                   help="with --offline: all traffic, only the earn app's (for the credit job), "
                        "or only recorded clicks (for the start-up bench)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data directory whose config.toml to use")
    p.add_argument("--clicks", type=int, default=500)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=_simulate)

    p = sub.add_parser("demo", help="create data/demo, serve it, simulate traffic, and stop")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA / "demo")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--clicks", type=int, default=250, help="clicks per day")
    p.add_argument("--history-days", type=int, default=13,
                   help="days of history before today, sent in-process with a simulated clock")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=_demo)

    p = sub.add_parser("notebook", help="open a notebook as an app (marimo run)")
    p.add_argument("name", help="reconciliation, troubleshooting or overview")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA / "demo")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2718)
    p.set_defaults(func=_notebook)

    # Subcommands of the pipeline and notebooks register themselves when present.
    for module in ("pipeline.cli",):
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
