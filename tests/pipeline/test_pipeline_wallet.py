"""The wallet-credit batch job: credits once, debits reversals once, survives a crash half way."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import orjson
import polars as pl
import pytest

import pipeline
from pipeline.errors import LedgerError
from pipeline.wallet import entry_id, ledger_path, read_ledger
from tests.support.log_builder import LogBuilder, cid, make_data_dir

NOW = datetime(2024, 5, 2, 9, 0, tzinfo=UTC)


def earn(b: LogBuilder, n: int, user: str, amount: str, status: str = "completed", **kw):
    b.click(cid(n), offer_id="taskwall-tasks", user_id=user, product_id="task-1", ttl_hours=24)
    b.postback(cid(n), amount=amount, status=status, dialect="earn", **kw)


@pytest.fixture
def data(tmp_path):
    return make_data_dir(tmp_path / "data")


def test_credits_each_counted_earn_conversion_once(data):
    b = LogBuilder()
    earn(b, 1, "u1", "10.01")  # 50 % = 5.005 -> 5.00 (half-even to cents)
    earn(b, 2, "u1", "10.03")  # 5.015 -> 5.02
    earn(b, 3, "u2", "4", status="pending")  # not counted: no credit
    earn(b, 4, "u2", "7", currency="BRL")  # no fx rate: no credit
    b.click(cid(5))
    b.postback(cid(5), amount="100")  # a link conversion: affiliates are paid elsewhere
    b.write(data)
    report = pipeline.credit(data, now=NOW, batch_id="batch-1")
    assert (report.credits, report.debits, report.total("credit")) == (2, 0, D("10.02"))
    entries = read_ledger(ledger_path(data)).entries
    assert [(e["kind"], e["user_id"], e["click_id"], e["amount"], e["currency"], e["batch_id"],
             e["credited_at"]) for e in entries] == [
        ("credit", "u1", cid(1), "5.00", "USD", "batch-1", "2024-05-02T09:00:00.000000Z"),
        ("credit", "u1", cid(2), "5.02", "USD", "batch-1", "2024-05-02T09:00:00.000000Z"),
    ]
    assert entries[0]["entry_id"] == entry_id("credit", cid(1), cid(1))
    assert entries[0]["seq"] == 2  # the recorded postback it traces to
    before = ledger_path(data).read_bytes()
    again = pipeline.credit(data, now=NOW, batch_id="batch-2")
    assert again.appended == []
    assert ledger_path(data).read_bytes() == before
    wh = pipeline.load(data)
    assert wh.wallet_credits.select("user_id", "amount", "running_balance").rows() == [
        ("u1", D("5.00"), D("5.00")), ("u1", D("5.02"), D("10.02"))]
    assert wh.wallet_balances.select("user_id", "credited", "debited", "balance", "entries").rows() == [
        ("u1", D("5.00") + D("5.02"), D("0"), D("10.02"), 2)]


def test_pending_then_approved_is_credited_when_it_counts(data):
    b = LogBuilder()
    earn(b, 1, "u1", "8", status="pending", status_updates=True)
    b.write(data)
    assert pipeline.credit(data, now=NOW).appended == []
    b.postback(cid(1), status="completed", result="duplicate", dialect="earn", status_updates=True)
    b.write(data)
    report = pipeline.credit(data, now=NOW)
    assert [(e["kind"], e["amount"]) for e in report.appended] == [("credit", "4.00")]


def test_a_reversal_appends_one_debit_of_the_credited_amount(data):
    b = LogBuilder()
    earn(b, 1, "u1", "9", status_updates=True)
    earn(b, 2, "u2", "2", status_updates=True)
    b.write(data)
    pipeline.credit(data, now=NOW, batch_id="b1")
    reversal = b.postback(cid(1), status="reversed", result="duplicate", dialect="earn", status_updates=True)
    b.write(data)
    report = pipeline.credit(data, now=NOW, batch_id="b2")
    assert [(e["kind"], e["user_id"], e["amount"], e["event_id"], e["seq"]) for e in report.appended] == [
        ("debit", "u1", "4.50", reversal["event_id"], reversal["seq"])]
    assert pipeline.credit(data, now=NOW, batch_id="b3").appended == []
    wh = pipeline.load(data)
    assert wh.wallet_credits.select("kind", "user_id", "signed_amount", "running_balance").rows() == [
        ("credit", "u1", D("4.50"), D("4.50")), ("credit", "u2", D("1.00"), D("1.00")),
        ("debit", "u1", D("-4.50"), D("0.00"))]
    assert dict(wh.wallet_balances.select("user_id", "balance").rows()) == {"u1": D("0"), "u2": D("1")}


def test_a_crash_half_way_never_credits_twice(data):
    b = LogBuilder()
    for n in range(1, 6):
        earn(b, n, f"u{n % 2 + 1}", str(n))
    b.write(data)
    pipeline.credit(data, now=NOW, batch_id="full")
    full = ledger_path(data).read_bytes()
    # the crash: only two and a half lines reached the disk
    lines = full.splitlines(keepends=True)
    ledger_path(data).write_bytes(lines[0] + lines[1] + lines[2][:25])
    report = pipeline.credit(data, now=NOW, batch_id="retry")
    assert report.repaired_torn_line
    assert report.credits == 3
    entries = read_ledger(ledger_path(data)).entries
    assert read_ledger(ledger_path(data)).torn is None
    assert sorted(e["entry_id"] for e in entries) == sorted(orjson.loads(x)["entry_id"] for x in lines)
    assert len({e["entry_id"] for e in entries}) == 5


def test_a_corrupt_ledger_line_is_refused(data):
    b = LogBuilder()
    earn(b, 1, "u1", "2")
    earn(b, 2, "u1", "2")
    b.write(data)
    pipeline.credit(data, now=NOW)
    path = ledger_path(data)
    raw = path.read_bytes().replace(b'"amount":"1.00"', b'"amount":"9.00"', 1)
    path.write_bytes(raw)
    with pytest.raises(LedgerError, match="line 1 is corrupt"):
        pipeline.credit(data, now=NOW)


def test_wallet_tables_exist_when_nothing_was_credited(data):
    b = LogBuilder()
    b.click(cid(1))
    b.write(data)
    pipeline.run(data)
    wh = pipeline.load(data)
    assert wh.wallet_credits.is_empty() and wh.wallet_balances.is_empty()
    assert wh.wallet_credits.schema["amount"] == pl.Decimal(38, 2)


def test_an_earn_click_is_credited_once_even_with_several_transactions(data):
    """Seed 000: one click = one conversion; a retry with a new transactionId is not paid twice."""
    b = LogBuilder()
    earn(b, 1, "u1", "10", transaction_id="t-1")
    b.postback(cid(1), amount="10", status="completed", dialect="earn", transaction_id="t-2")
    b.write(data)
    report = pipeline.credit(data, now=NOW, batch_id="batch-1")
    assert [(e["kind"], e["transaction_id"], e["amount"]) for e in report.appended] == [("credit", "t-1", "5.00")]
    assert [(s["click_id"], s["transaction_id"]) for s in report.skipped] == [(cid(1), "t-2")]
    assert "one click = one credit" in report.describe()
    again = pipeline.credit(data, now=NOW, batch_id="batch-2")
    assert again.appended == [] and len(again.skipped) == 1
    assert pipeline.load(data).wallet_balances.select("user_id", "balance").rows() == [("u1", D("5.00"))]
