"""`clickledger simulate`: the plan sent to a running receiver over HTTP, and the one loop
that sends a plan through any client (HTTP here; in process for history and templates).

The plan is sent in phases: clicks, then their postbacks, then resent and late postbacks,
so a follow-up always finds its original already answered. Only the standard library
talks HTTP (keep-alive `http.client` connections, a few threads), and redirects are never
followed: the click id is read from the 302's Location.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from itertools import groupby
from pathlib import Path

from clickledger.simulator.clients import HttpClient
from clickledger.simulator.plan import SimulationError, load, plan_traffic
from clickledger.simulator.sending import (
    REQUEST_TIMEOUT,
    TIME_LIMIT,
    Clicked,
    Request,
    Sender,
    resolve,
)
from clickledger.simulator.steps import Step
from clickledger.simulator.summary import SimulationSummary

THREADS = 8


def run_plan(plan: list[Step], sender: Sender, summary: SimulationSummary, *,
             threads: int = THREADS) -> None:
    """Send `plan` phase by phase, counting into `summary`: a phase starts once the one before
    is answered, so a step's click and original are known when it is resolved.

    Within a phase `threads` requests are in flight; with one thread they go in plan order,
    one at a time, which makes a run reproducible (the offline generator's templates).
    """
    clicks: dict[int, Clicked] = {}
    sent: set[int] = set()
    with ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="simulate")
                                   ) if threads > 1 else None
        send_all = pool.map if pool is not None else map
        for _, group in groupby(plan, key=lambda s: s.phase):
            steps = list(group)
            if time.monotonic() >= sender.deadline:
                summary.not_sent += len(steps)
                continue
            jobs: list[tuple[Step, Request]] = []
            for step in steps:
                request = None if step.after is not None and step.after not in sent else (
                    resolve(step, clicks))
                if request is None:
                    summary.skipped[(step.kind, step.dialect, step.scenario)] += 1
                else:
                    jobs.append((step, request))
            for outcome in send_all(lambda job: sender.send(*job), jobs):
                summary.add(outcome)
                if outcome.status is not None:
                    sent.add(outcome.step.id)
                if outcome.click is not None:
                    clicks[outcome.step.id] = outcome.click


def check_health(sender: Sender, summary: SimulationSummary) -> None:
    """GET /healthz, counted; a SimulationError when the receiver is unreachable or unhealthy."""
    step = Step(-1, 0, "health", "", "healthz", frozenset({"ok"}), path="/healthz")
    request = resolve(step, {})
    assert request is not None
    outcome = sender.send(step, request)
    if outcome.status == 0:
        raise SimulationError(f"the receiver at {summary.url} is unreachable "
                              f"(GET /healthz: {outcome.code.removeprefix('transport_')}); "
                              "start it with `clickledger serve`")
    summary.add(outcome)
    if outcome.status != 200:
        raise SimulationError(f"the receiver at {summary.url} is not healthy: GET /healthz "
                              f"answered {outcome.status} {outcome.code}")


def simulate(url: str, data_dir: Path, *, clicks: int = 500, seed: int = 1,
             time_limit: float = TIME_LIMIT) -> SimulationSummary:
    """Send the planned traffic to the receiver at `url`; raises SimulationError before sending
    anything when the config is unusable or the receiver is not healthy."""
    config, keys = load(data_dir)
    plan = plan_traffic(config, keys, clicks, seed)
    client = HttpClient(url)
    summary = SimulationSummary(client.url, seed, clicks, planned=len(plan) + 1, time_limit=time_limit,
                                public_url=config.public_url)
    started = time.monotonic()
    try:
        check_health(Sender(client, started + REQUEST_TIMEOUT), summary)
        run_plan(plan, Sender(client, started + time_limit), summary)
    finally:
        client.close()
        summary.elapsed = time.monotonic() - started
    return summary


def main(args: argparse.Namespace) -> int:
    """`clickledger simulate`: 0 after printing the summary, 2 when it could not start."""
    try:
        summary = simulate(args.url, Path(args.data), clicks=args.clicks, seed=args.seed)
    except SimulationError as exc:
        print(f"clickledger simulate: {exc}", file=sys.stderr)
        return 2
    print(summary.describe())
    return 0


__all__ = ["THREADS", "check_health", "main", "run_plan", "simulate"]
