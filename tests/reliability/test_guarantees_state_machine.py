"""Guarantee 5 (pipeline half): whatever order earn clicks, postbacks and credit runs come in,
each conversion and each earn click is credited at most once, balances are the ledger's
arithmetic, reruns change nothing, and every ledger entry traces to a log record.

A hypothesis RuleBasedStateMachine drives the REAL receiver app in-process (falcon's
TestClient over receiver.app.create_app, a fixed clock, predictable click ids):
earn clicks, first postbacks, and follow-ups of recorded pairs in any order
(same-status duplicates, status updates, reversals, a different amount, a retry on a
new transactionId), interleaved with `credit` runs (and a last `credit` and `run` at the end of each example). The receiver itself keeps
its guarantee that a pair's `recorded` record precedes its duplicates. A model of
the receiver's and the wallet's rules is checked against the log's answers and the
ledger after every step.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import falcon.testing
import polars as pl
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import pipeline
from clickledger.demo import write_demo_config, write_fx_rates
from pipeline.wallet import credit_batch, ledger_path, read_ledger
from receiver.app import create_app
from receiver.contract.params import normalise_status

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
TOKENS = {"u1": "user-token-1", "u2": "user-token-2", "u3": "user-token-3"}
AMOUNTS = ["1.25", "3", "10.5", "0.99", "7.01"]
STATUSES = ["completed", "completed", "pending", "reversed", "chargeback", "declined"]
RANK = {"pending": 0, "approved": 1, "rejected": 2}


class Clock:
    """The receiver's clock: one second per request, so no earn click (24 h) ever expires."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def parquet_hashes(data: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((data / "warehouse").glob("*.parquet"))}


class WalletMachine(RuleBasedStateMachine):
    """State: the receiver app over a fresh DATA, and a model of what it recorded and credited."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="clickledger-sm-"))
        self.data = self.tmp / "data"
        write_demo_config(self.data)
        write_fx_rates(self.data, today=START.date())
        self.clock = Clock()
        self.ids = 0
        self.app = create_app(self.data, clock=self.clock, new_click_id=self._click_id)
        self.client = falcon.testing.TestClient(self.app)
        self.clicks: dict[str, str] = {}  # click id -> user
        self.pairs: dict[tuple[str, str], dict] = {}  # recorded pairs, in log order
        self.answers = {"recorded": 0, "duplicate": 0}
        self.txn = 0
        self.credited: dict[tuple[str, str], str] = {}  # model: pair -> amount credited
        self.debited: set[tuple[str, str]] = set()
        self.credited_clicks: set[str] = set()
        self.since_batch = 0  # requests since the last credit run

    def _click_id(self) -> str:
        self.ids += 1
        return f"00000000-0000-4000-8000-{self.ids:012d}"

    def teardown(self) -> None:
        try:
            if self.clicks:  # a last credit, then `run`: every check once more
                self.credit()
                self.run_reproduces_the_tables()
        finally:
            self.app.receiver.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------ requests

    @initialize(user=st.sampled_from(sorted(TOKENS)))
    def first_click(self, user: str) -> None:
        self.click(user)

    @rule(user=st.sampled_from(sorted(TOKENS)))
    def click(self, user: str) -> None:
        resp = self.client.simulate_post("/api/v1/earn/products/task-1/click", json={},
                                         headers={"Authorization": f"Bearer {TOKENS[user]}"})
        assert resp.status_code == 201, resp.text
        self.clicks[resp.json["clickId"]] = user
        self.since_batch += 1

    def _postback(self, click_id: str, txn: str, amount: str, status: str) -> str:
        resp = self.client.simulate_post("/api/v1/earn/postback", params={"click_id": click_id},
                                         json={"amount": float(amount), "status": status, "transactionId": txn})
        assert resp.status_code == 200, resp.text
        self.since_batch += 1
        return resp.json["result"]

    @rule(data=st.data(), amount=st.sampled_from(AMOUNTS), status=st.sampled_from(STATUSES))
    def postback(self, data: st.DataObject, amount: str, status: str) -> None:
        """A first postback on a new transactionId (for a click without one, or a retry on another)."""
        click_id = data.draw(st.sampled_from(sorted(self.clicks)), label="click")
        self.txn += 1
        txn = f"t-{self.txn}"
        assert self._postback(click_id, txn, amount, status) == "recorded"
        self.answers["recorded"] += 1
        self.pairs[(click_id, txn)] = {"amount": Decimal(amount), "status": normalise_status(status),
                                       "duplicates": 0, "conflicting": 0}

    @precondition(lambda self: self.pairs)
    @rule(data=st.data(), same_amount=st.booleans(), status=st.sampled_from(STATUSES))
    def follow_up(self, data: st.DataObject, same_amount: bool, status: str) -> None:
        """A later postback of a recorded pair: any pair, any status, in any order."""
        key = data.draw(st.sampled_from(sorted(self.pairs)), label="pair")
        pair = self.pairs[key]
        amount = str(pair["amount"]) if same_amount else data.draw(
            st.sampled_from([a for a in AMOUNTS if Decimal(a) != pair["amount"]]), label="other amount")
        assert self._postback(*key, amount, status) == "duplicate"  # the receiver's dedup
        self.answers["duplicate"] += 1
        pair["duplicates"] += 1
        pair["conflicting"] += Decimal(amount) != pair["amount"]
        step = normalise_status(status)
        if step in ("approved", "rejected") and RANK[step] > RANK[pair["status"]]:  # taskwall: updates on
            pair["status"] = step

    # ------------------------------------------------------------ batch jobs

    @precondition(lambda self: self.since_batch >= 4)  # a batch job costs ~100x a request: not too often
    @rule()
    def credit(self) -> None:
        """`credit`, then the same job again over the same conversions: it must append nothing."""
        self.since_batch = 0
        report = pipeline.credit(self.data, now=self.clock.now)
        self._model_credit()
        path = ledger_path(self.data)
        before = path.read_bytes() if path.exists() else b""
        wh = pipeline.load(self.data)
        rerun = credit_batch(self.data, wh.conversions, base_currency="USD", now=self.clock.now)
        assert rerun.appended == [] and (path.read_bytes() if path.exists() else b"") == before
        assert {(e["kind"], e["click_id"], e["transaction_id"]) for e in report.appended} <= self._model_entries()
        self._check_tables(wh)

    def run_reproduces_the_tables(self) -> None:
        """`run` after `credit` rewrites every table byte for byte (the same log, the same ledger)."""
        hashes = parquet_hashes(self.data)
        summary = pipeline.run(self.data)
        assert parquet_hashes(self.data) == hashes
        assert summary.conversions == self.answers["recorded"]
        self._check_tables(summary.warehouse)

    def _model_credit(self) -> None:
        """The wallet's rules over the model: log order, one click = one credit, a debit per reversal."""
        for key, pair in self.pairs.items():
            if pair["status"] == "approved" and key not in self.credited and key[0] not in self.credited_clicks:
                self.credited[key] = "?"
                self.credited_clicks.add(key[0])
            elif pair["status"] == "rejected" and key in self.credited:
                self.debited.add(key)

    def _model_entries(self) -> set[tuple[str, str, str]]:
        return ({("credit", *k) for k in self.credited} | {("debit", *k) for k in self.debited})

    # ------------------------------------------------------------ checks

    @invariant()
    def ledger_credits_each_conversion_and_click_at_most_once(self) -> None:
        entries = read_ledger(ledger_path(self.data)).entries
        ids = [e["entry_id"] for e in entries]
        assert len(ids) == len(set(ids))
        credits = [(e["click_id"], e["transaction_id"]) for e in entries if e["kind"] == "credit"]
        assert len(credits) == len(set(credits))
        clicks = [c for c, _ in credits]
        assert len(clicks) == len(set(clicks))  # one click = one credit
        debits = [(e["click_id"], e["transaction_id"]) for e in entries if e["kind"] == "debit"]
        assert len(debits) == len(set(debits)) and set(debits) <= set(credits)
        # the ledger is exactly what the model's credit runs produced
        assert {(e["kind"], e["click_id"], e["transaction_id"]) for e in entries} == self._model_entries()

    def _check_tables(self, wh: pipeline.Warehouse) -> None:
        conversions, postbacks, ledger = wh.conversions, wh.postbacks, wh.wallet_credits
        # the receiver's answers agree with the conversions
        assert conversions.height == self.answers["recorded"] == len(self.pairs)
        assert postbacks.group_by("result").len().sort("result").rows() == sorted(
            (r, n) for r, n in self.answers.items() if n)
        got = {(r["click_id"], r["transaction_id"]): r for r in conversions.iter_rows(named=True)}
        assert set(got) == set(self.pairs)
        for key, pair in self.pairs.items():
            row = got[key]
            assert (row["status"], row["amount"], row["duplicates"], row["conflicting_duplicates"]) == (
                pair["status"], pair["amount"], pair["duplicates"], pair["conflicting"]), key
        # every entry traces to a log record of its pair: the recorded postback, or the reversal
        records = {r["event_id"]: r for r in postbacks.iter_rows(named=True)}
        for e in ledger.iter_rows(named=True):
            rec = records[e["event_id"]]
            assert (rec["seq"], rec["click_id"], rec["transaction_id"]) == (
                e["seq"], e["click_id"], e["transaction_id"])
            if e["kind"] == "credit":
                assert rec["result"] == "recorded"
                share = got[(e["click_id"], e["transaction_id"])]["affiliate_payout_base"]
                assert e["amount"] == share.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
            else:
                assert rec["result"] in ("recorded", "duplicate") and rec["status"] == "rejected"
        # balances are the ledger's arithmetic: credits of credited conversions minus their reversals
        signed = pl.when(pl.col("kind") == "debit").then(-pl.col("amount")).otherwise(pl.col("amount"))
        expected = dict(ledger.group_by("user_id").agg(signed.sum()).rows())
        balances = dict(wh.wallet_balances.select("user_id", "balance").rows())
        assert balances == expected
        for user, balance in balances.items():
            credited = [k for k in self.credited if self.clicks[k[0]] == user]
            amounts = {(e["click_id"], e["transaction_id"]): e["amount"]
                       for e in ledger.filter(pl.col("kind") == "credit").iter_rows(named=True)}
            assert balance == sum((amounts[k] for k in credited if k not in self.debited), Decimal("0"))


WalletMachine.TestCase.settings = settings(max_examples=15, stateful_step_count=25, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestWalletGuarantees = WalletMachine.TestCase
