"""`clickledger forward | deliveries`: the forwarder of conversions to publishers and its log.

Registered by clickledger.cli; Polars and the pipeline are imported inside the commands.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from datetime import date
from pathlib import Path

DEFAULT_DATA = Path("data")
# pipeline.forwarding.state.STATES, spelt out so that --help imports nothing heavy
DELIVERY_STATES = ("pending", "delivered", "failed", "exhausted", "stopped")


def _fail(message: object) -> int:
    print(f"clickledger: {message}", file=sys.stderr)
    return 2


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a day is YYYY-MM-DD, got {text!r}") from None


def attempt_line(delivery, result, state: str) -> str:  # noqa: ANN001 - pipeline types, imported lazily
    """One attempt as `forward` prints it."""
    from pipeline.forwarding.render import mask_url

    planned = delivery.planned
    said = f"HTTP {result.http_status}" if result.http_status is not None else result.error
    if result.http_status is not None and result.error:
        said = result.error
    return (f"  {state:<9} {planned['delivery_id']} {planned['affiliate']} {planned['event']:<8} "
            f"{planned['click_id']} {planned['method']} {mask_url(planned['url'])} -> {said}")


def _forward(args: argparse.Namespace) -> int:
    from clickledger.pipeline_cli import setup_logging

    setup_logging()
    if args.replay and not (args.affiliate and args.since):
        return _fail("forward --replay needs --affiliate ID and --since DAY (YYYY-MM-DD)")
    if not args.replay and (args.affiliate or args.since):
        return _fail("--affiliate and --since go with --replay (to list deliveries: clickledger deliveries)")
    modes = [name for name, on in (("--follow", args.follow), ("--resend", args.resend),
                                   ("--replay", args.replay), ("--dry-run", args.dry_run)) if on]
    if len(modes) > 1:
        return _fail(f"give one of {', '.join(modes)}")
    from pipeline.errors import PipelineError
    from pipeline.forwarding.forwarder import Forwarder, preview, refresh_tables
    from pipeline.forwarding.render import mask_url

    try:
        if args.dry_run:
            due = preview(args.data)
            print(f"clickledger forward --dry-run: {len(due)} deliveries would be sent now (nothing sent)")
            for planned in due:
                print(f"  {planned['delivery_id']} {planned['affiliate']} {planned['event']:<8} "
                      f"{planned['method']} {mask_url(planned['url'])}"
                      + (f" body {planned['body']}" if planned["body"] else ""))
            return 0
        with Forwarder(args.data) as forwarder:
            if args.follow:
                return _follow(forwarder, args.data)
            if args.resend:
                forwarder.reopen([args.resend], "resend")
            if args.replay:
                ids = forwarder.replay(args.affiliate, args.since)
                print(f"clickledger forward --replay: {len(ids)} deliveries to {args.affiliate} since "
                      f"{args.since.isoformat()} asked for again")
            report = forwarder.run_once()
            state = forwarder.state()
        refresh_tables(args.data)
    except PipelineError as exc:
        return _fail(exc)
    if forwarder.config is not None and not any(a.postbacks for a in forwarder.config.affiliates.values()):
        print(f"clickledger forward: no publisher endpoint in {args.data / 'config.toml'} "
              "([[affiliates.postbacks]], see docs/forwarding.md): nothing to forward")
    counts = {}
    for delivery in state.by_id.values():
        counts[delivery.state] = counts.get(delivery.state, 0) + 1
    print(f"clickledger forward: {report.planned} new deliveries planned, {len(report.attempts)} attempts")
    for delivery, result, outcome in report.attempts:
        print(attempt_line(delivery, result, outcome))
    print("  deliveries   " + (", ".join(f"{s} {n}" for s, n in sorted(counts.items())) or "none"))
    waiting = [d.next_attempt_at for d in state.by_id.values() if d.state in ("pending", "failed")
               and d.next_attempt_at is not None]
    if waiting:
        print(f"  next attempt {min(waiting).isoformat()} (clickledger forward --follow keeps retrying)")
    return 0


def _follow(forwarder, data: Path) -> int:  # noqa: ANN001
    from pipeline.errors import PipelineError
    from pipeline.forwarding.forwarder import refresh_tables

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"clickledger forward --follow: forwarding from {data} (Ctrl-C to stop)", flush=True)

    def on_pass(report) -> None:  # noqa: ANN001
        if report.planned:
            print(f"  planned   {report.planned} new deliveries", flush=True)
        for delivery, result, outcome in report.attempts:
            print(attempt_line(delivery, result, outcome), flush=True)

    try:
        while not stop.is_set():
            try:
                forwarder.follow(stop, on_pass=on_pass)
            except PipelineError as exc:  # e.g. a config being edited: say so, keep following
                print(f"clickledger forward: {exc} (retrying in 2 s)", file=sys.stderr, flush=True)
                stop.wait(2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    with contextlib.suppress(PipelineError):
        refresh_tables(data)
    return 0


def _deliveries(args: argparse.Namespace) -> int:
    import polars as pl

    from pipeline.errors import PipelineError
    from pipeline.forwarding.tables import build_delivery_tables
    from pipeline.runner import load_pipeline_config

    try:
        deliveries, _ = build_delivery_tables(args.data, load_pipeline_config(args.data))
    except PipelineError as exc:
        return _fail(exc)
    if args.state:
        deliveries = deliveries.filter(pl.col("state") == args.state)
    if args.affiliate:
        deliveries = deliveries.filter(pl.col("affiliate") == args.affiliate)
    print(f"clickledger deliveries: {deliveries.height}"
          + (f" {args.state}" if args.state else "") + (f" to {args.affiliate}" if args.affiliate else ""))
    for row in deliveries.iter_rows(named=True):
        said = row["last_error"] or (f"HTTP {row['last_http_status']}" if row["last_http_status"] else "")
        nxt = f" next {row['next_attempt_at']:%Y-%m-%d %H:%M:%S}Z" if row["next_attempt_at"] else ""
        points = f" {row['points']:+d} pts" if row["points"] is not None else ""
        print(f"  {row['state']:<9} {row['delivery_id']} {row['affiliate']} {row['event']:<8} {row['click_id']} "
              f"{row['transaction_id']}{points} attempts {row['attempts']}{nxt} {row['endpoint']}"
              + (f" | {said}" if said else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from clickledger.cli import add_command, add_data_option

    p = add_command(
        subparsers, "forward", "tell publishers about their conversions (postbacks to [[affiliates.postbacks]])",
        "Derive from the log what each publisher endpoint should be told (one delivery per conversion, "
        "event and endpoint), send what is due, and record every attempt in DATA/ledger/deliveries.ndjson. "
        "Failed deliveries are retried for about three days (docs/forwarding.md). Without --follow, one "
        "pass.", _forward, lambda a: a.data)
    add_data_option(p, DEFAULT_DATA, "the data directory (config.toml, log/, ledger/)")
    p.add_argument("--follow", action="store_true",
                   help="keep running: forward new conversions as they are recorded, retry on schedule")
    p.add_argument("--resend", metavar="DELIVERY_ID",
                   help="send this delivery again (a new retry schedule, the same delivery id)")
    p.add_argument("--replay", action="store_true",
                   help="send again every delivery to --affiliate of events since --since (after a "
                        "publisher's outage), delivered ones included")
    p.add_argument("--affiliate", metavar="ID", help="with --replay: the publisher")
    p.add_argument("--since", type=_day, metavar="DAY", help="with --replay: the first day (UTC), YYYY-MM-DD")
    p.add_argument("--dry-run", action="store_true", help="print what would be sent now; send and record nothing")

    p = add_command(
        subparsers, "deliveries", "list the forwarder's deliveries and their states",
        "One line per delivery from DATA/ledger/deliveries.ndjson: state, delivery id, publisher, event, "
        "conversion, points, attempts, next attempt, endpoint (secrets masked) and the last answer or error.",
        _deliveries, lambda a: a.data)
    add_data_option(p, DEFAULT_DATA, "the data directory (ledger/)")
    p.add_argument("--state", choices=DELIVERY_STATES, help="only deliveries in this state")
    p.add_argument("--affiliate", metavar="ID", help="only deliveries to this publisher")
