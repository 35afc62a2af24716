"""Reconciliation: every outcome, date basis and time zone, column mapping, spreadsheet-safe CSV."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import polars as pl
import pytest
from pipeline_helpers import T0, LogBuilder, cid, make_data_dir

import pipeline
from pipeline.errors import StatementError, UnknownPartnerError
from pipeline.reconciliation import DEFAULT_COLUMNS, read_statement, safe_cell, statement_columns
from receiver.cli import main

STATEMENT = """click_id,transaction_id,status,amount,currency
{c1},,approved,100.004,USD
{c2},,approved,55,USD
{c3},,approved,20,USD
{c4},,approved,10,EUR
{c9},,approved,7,EUR
"=HYPERLINK(""http://evil.example"")",,approved,1,USD
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    data = make_data_dir(tmp_path_factory.mktemp("rec") / "data")
    b = LogBuilder()
    for i, (amount, status) in enumerate([("100", None), ("50", None), ("20", "pending"), ("10", None),
                                          ("5", None)], start=1):
        b.click(cid(i))
        b.postback(cid(i), amount=amount, status=status)
    b.click(cid(6), offer_id="peer-app", affiliate_id="aff3")  # another partner: never in acme's statement
    b.postback(cid(6), amount="3", dialect="peerclick")
    b.write(data)
    pipeline.run(data)
    return data


@pytest.fixture
def statement(tmp_path):
    path = tmp_path / "acme.csv"
    path.write_text(STATEMENT.format(c1=cid(1), c2=cid(2), c3=cid(3), c4=cid(4), c9=cid(9)), encoding="utf-8")
    return path


def test_every_outcome_with_totals(data, statement):
    result = pipeline.reconcile(data, partner="acme", statement=statement)
    rows = result.rows.select("click_id", "outcome", "mismatches", "ours_amount", "theirs_amount",
                              "amount_difference").rows()
    assert rows == [
        (cid(1), "matched", "", D("100"), D("100.004"), D("0.00")),
        (cid(2), "amount_mismatch", "amount", D("50"), D("55"), D("5.00")),
        (cid(3), "status_mismatch", "status", D("20"), D("20"), D("0.00")),
        (cid(4), "currency_mismatch", "currency", D("10"), D("10"), D("0.00")),
        (cid(5), "missing_theirs", "", D("5"), None, None),
        (cid(9), "missing_ours", "", None, D("7"), None),
        ('=HYPERLINK("http://evil.example")', "missing_ours", "", None, D("1"), None),
    ]
    assert result.totals.select("outcome", "currency", "rows", "ours_amount", "theirs_amount",
                                "theirs_amount_base").rows() == [
        ("matched", "USD", 1, D("100"), D("100.004"), D("100.004")),
        ("missing_ours", "EUR", 1, D("0"), D("7"), D("8.4")),  # no date: the latest EUR rate, 1.2
        ("missing_ours", "USD", 1, D("0"), D("1"), D("1")),
        ("missing_theirs", "USD", 1, D("5"), D("0"), D("0")),
        ("amount_mismatch", "USD", 1, D("50"), D("55"), D("55")),
        ("status_mismatch", "USD", 1, D("20"), D("20"), D("20")),
        ("currency_mismatch", "USD", 1, D("10"), D("10"), D("12")),
    ]
    summary = dict(result.summary.select("outcome", "rows").rows())
    assert summary == {"matched": 1, "missing_ours": 2, "missing_theirs": 1, "amount_mismatch": 1,
                       "status_mismatch": 1, "currency_mismatch": 1}
    assert "status_mismatch" in result.describe()


def test_csv_output_is_safe_to_open_in_a_spreadsheet(data, statement, tmp_path):
    out = pipeline.reconcile(data, partner="acme", statement=statement).to_csv(tmp_path / "out.csv")
    text = out.read_text(encoding="utf-8")
    assert "'=HYPERLINK" in text
    cells = pl.read_csv(out, infer_schema=False)
    for column in cells.columns:
        for value in cells[column].drop_nulls():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), value
            assert not value.startswith("-") or value[1:].replace(".", "").isdigit(), value
    assert [safe_cell(v) for v in ["=1+1", "+x", "-x", "@SUM(A1)", "\tx", "-12.50", "ok"]] == [
        "'=1+1", "'+x", "'-x", "'@SUM(A1)", "'\tx", "-12.50", "ok"]


def test_column_mapping_and_missing_columns(data, tmp_path):
    path = tmp_path / "renamed.csv"
    path.write_text(f"Click,Order,State,Payout,Cur\n{cid(1)},{cid(1)},paid,100,usd\n", encoding="utf-8")
    with pytest.raises(StatementError) as err:
        pipeline.reconcile(data, partner="acme", statement=path)
    assert "has no column 'click_id'" in str(err.value)
    assert "its columns are: Click, Order, State, Payout, Cur" in str(err.value)
    mapping = {"click_id": "Click", "transaction_id": "Order", "status": "State", "amount": "Payout",
               "currency": "Cur"}
    result = pipeline.reconcile(data, partner="acme", statement=path, columns=mapping)
    assert dict(result.summary.select("outcome", "rows").rows())["matched"] == 1
    with pytest.raises(StatementError, match="has no column 'Amount' \\(mapped from our 'amount'\\)"):
        pipeline.reconcile(data, partner="acme", statement=path, columns={**mapping, "amount": "Amount"})


def test_usual_export_headings_are_read_without_a_mapping(data, tmp_path, capsys):
    """A statement exported with its platform's headings reconciles from the command line
    with no --column, and the summary says which heading was read for which column."""
    path = tmp_path / "export.csv"
    path.write_text(f"Click ID,Order ID,Conversion Status,Payout,Currency Code\n{cid(1)},{cid(1)},paid,100,usd\n",
                    encoding="utf-8")
    assert main(["reconcile", "--data", str(data), "--partner", "acme", "--statement", str(path)]) == 0
    out = capsys.readouterr().out
    assert ("statement columns read: click_id <- 'Click ID', transaction_id <- 'Order ID', "
            "status <- 'Conversion Status', amount <- 'Payout', currency <- 'Currency Code'") in out
    result = pipeline.reconcile(data, partner="acme", statement=path)
    assert dict(result.summary.select("outcome", "rows").rows())["matched"] == 1
    # an explicit mapping wins over a guess, and a heading is never read for two columns
    assert statement_columns(["Payout", "amount", "Click ID"], {"amount": "Payout"}) == {
        **DEFAULT_COLUMNS, "amount": "Payout", "click_id": "Click ID"}
    assert statement_columns(["Click ID", "cid"])["click_id"] == "Click ID"


def test_bad_statements_are_explained(data, tmp_path):
    dupes = pl.DataFrame({"click_id": [cid(1), cid(1)], "status": ["ok", "ok"], "amount": ["1", "1"],
                          "currency": ["USD", "USD"]})
    with pytest.raises(StatementError, match="more than once: line 2"):
        pipeline.reconcile(data, partner="acme", statement=dupes)
    junk = dupes.with_columns(pl.Series("click_id", [cid(1), cid(2)]), pl.Series("amount", ["1", "ten"]))
    with pytest.raises(StatementError, match="line 3: click_id=.* amount='ten'"):
        pipeline.reconcile(data, partner="acme", statement=junk)
    with pytest.raises(UnknownPartnerError, match="known partners: acme, clickwall"):
        pipeline.reconcile(data, partner="nobody", statement=dupes)


def test_time_zone_and_date_basis_of_the_statement_days(tmp_path):
    data = make_data_dir(tmp_path / "data")
    late = datetime(2024, 5, 1, 23, 30, tzinfo=UTC)  # 2024-05-02 08:30 in Tokyo
    b = LogBuilder()
    b.click(cid(1), at=late - timedelta(days=2))  # clicked on 04-29
    b.postback(cid(1), amount="10", at=late)
    b.write(data)
    wh = pipeline.run(data).warehouse
    statement = pl.DataFrame({"click_id": [cid(1)], "status": ["approved"], "amount": ["10"], "currency": ["USD"],
                              "date": ["2024-05-02"]})
    outcome = lambda **kw: pipeline.reconcile(wh, partner="acme", statement=statement, **kw).rows[  # noqa: E731
        "outcome"].to_list()
    assert outcome(tz="Asia/Tokyo") == ["matched"]  # period from the statement's date column
    assert outcome() == ["missing_ours"]  # in UTC the conversion is on 05-01, outside the statement's day
    assert outcome(tz="Asia/Tokyo", date_basis="click") == ["missing_ours"]
    assert outcome(date_basis="click", start="2024-04-29", end="2024-05-02") == ["matched"]
    result = pipeline.reconcile(wh, partner="acme", statement=statement, tz="Asia/Tokyo")
    assert result.rows["ours_day"].to_list() == [T0.date().replace(day=2)]
    with pytest.raises(pipeline.PipelineError, match="unknown time zone"):
        pipeline.reconcile(wh, partner="acme", statement=statement, tz="Mars/Olympus")


def test_sample_statement_shows_every_outcome_and_missing_rows_are_explained(tmp_path):
    from pipeline.reconciliation import (
        daily_totals,
        explain_missing_ours,
        sample_statement,
        totals_by_status,
    )

    data = make_data_dir(tmp_path / "data")
    b = LogBuilder()
    for n in range(1, 81):
        b.click(cid(n))
        b.postback(cid(n), amount=f"{10 + n}.00")
    b.postback("{click_id}", amount="12", error="click_not_found", http_status=404, key_partner_id="acme")
    b.write(data)
    pipeline.run(data)
    wh = pipeline.load(data)
    statement = sample_statement(wh, "acme", seed=3)
    result = pipeline.reconcile(wh, partner="acme", statement=statement)
    outcomes = set(result.rows["outcome"])
    assert {"matched", "missing_ours", "missing_theirs", "amount_mismatch", "status_mismatch"} <= outcomes
    why = {r["click_id"]: r["reason"] for r in explain_missing_ours(result, wh).rows(named=True)}
    assert why["{click_id}"] == "unsubstituted_macro"
    assert list(why.values()).count("never_received") == 2
    daily = daily_totals(result)
    assert set(daily["side"]) == {"ours", "theirs"}
    assert daily.filter(pl.col("side") == "ours")["count"].sum() == result.rows["ours_amount"].is_not_null().sum()
    by_status = totals_by_status(result)
    assert by_status["ours_count"].sum() == result.rows["ours_amount"].is_not_null().sum()
    assert by_status["theirs_count"].sum() == statement.height


def test_statement_headings_are_matched_to_our_columns_by_alias():
    from pipeline.reconciliation import guess_columns

    assert guess_columns(["Click ID", "Order ID", "State", "Payout", "Currency Code", "Day"]) == {
        "click_id": "Click ID", "transaction_id": "Order ID", "status": "State", "amount": "Payout",
        "currency": "Currency Code", "date": "Day"}
    # the receiver's own parameter aliases, any case, spaces, _ or -
    assert guess_columns(["CID", "txid", "STATUS", "payout", "currency", "converted-at"]) == {
        "click_id": "CID", "transaction_id": "txid", "status": "STATUS", "amount": "payout",
        "currency": "currency", "date": "converted-at"}
    # our own name is preferred to an alias; the first of two equal headings is taken
    guessed = guess_columns(["payout", "amount", "click_id", "Click_ID", "status", "currency"])
    assert guessed["amount"] == "amount" and guessed["click_id"] == "click_id"
    # nothing recognisable: None, and a heading serves one of our columns at most
    assert guess_columns(["ref", "value"]) == {"click_id": None, "transaction_id": None, "status": None,
                                                "amount": "value", "currency": None, "date": None}
    assert list(guess_columns(["\ufeffclick_id"]).values())[0] == "\ufeffclick_id"


def test_a_guessed_mapping_reconciles_a_statement_headed_the_partners_way(tmp_path):
    from pipeline.reconciliation import guess_columns, read_statement_csv

    statement = tmp_path / "s.csv"
    statement.write_bytes("\ufeffClick ID,Order ID,State,Payout,Currency Code\nc1,o1,paid,1.50,usd\n".encode())
    raw = read_statement_csv(statement)
    columns = {ours: theirs for ours, theirs in guess_columns(raw.columns).items() if theirs}
    frame = read_statement(raw, columns)
    assert frame.select("click_id", "transaction_id", "status", "currency").row(0) == ("c1", "o1", "approved", "USD")
    assert read_statement_csv(statement.read_bytes()).columns == raw.columns
