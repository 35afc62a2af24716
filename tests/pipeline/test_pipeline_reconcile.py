"""Reconciliation: every outcome, date basis and time zone, column mapping, spreadsheet-safe CSV."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline
from clickledger.cli import main
from pipeline.errors import StatementError, UnknownPartnerError
from pipeline.reconciliation import (
    DEFAULT_COLUMNS,
    read_statement,
    safe_cell,
    sample_statement,
    spreadsheet_safe,
    statement_columns,
)
from pipeline.reconciliation import sample as sample_module
from pipeline.warehouse import Warehouse
from tests.support.log_builder import OFFERS, T0, LogBuilder, cid, make_data_dir

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


# cells a spreadsheet might run, plain numbers, and both with a line break after them
formula_like = st.from_regex(r"[-=+@\t\r]?[0-9]{0,3}(\.[0-9]{0,2})?[a-z]?\n?", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.one_of(st.none(), st.text(), formula_like), max_size=8),
       numbers=st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=4))
def test_one_rule_for_a_cell_and_for_the_export(texts, numbers):
    """safe_cell gives exactly the cell the CSV export writes, for any text or number."""
    frame = pl.DataFrame({"text": texts}, schema={"text": pl.String})
    assert spreadsheet_safe(frame)["text"].to_list() == [safe_cell(t) for t in texts]
    assert spreadsheet_safe(pl.DataFrame({"n": numbers}))["n"].to_list() == [safe_cell(n) for n in numbers]


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


def test_sample_statement_changes_the_documented_share_of_rows():
    """Of many conversions, the sample drops and changes about the shares its constants say."""
    n = 4000
    conversions = pl.DataFrame({
        "partner_id": ["acme"] * n, "seq": list(range(1, n + 1)),
        "click_id": [cid(i) for i in range(n)], "transaction_id": [f"T{i}" for i in range(n)],
        "status": ["approved"] * n, "amount": [D("20.00")] * n, "currency": ["USD"] * n,
        "converted_at": [T0 + timedelta(minutes=i) for i in range(n)]})
    issues = pl.DataFrame(schema={"partner_id": pl.String, "key_partner_id": pl.String, "click_id": pl.String,
                                  "transaction_id": pl.String, "error": pl.String, "seq": pl.Int64,
                                  "amount": pl.String, "currency": pl.String,
                                  "received_at": pl.Datetime("us", "UTC")})
    statement = sample_statement(Warehouse({"conversions": conversions, "postback_issues": issues}), "acme")
    ours = statement.filter(pl.col("transaction_id").str.starts_with("T"))
    observed = {"dropped": n - ours.height, "amount": (ours["amount"] != "20.00").sum(),
                "status": (ours["status"] != "approved").sum(), "currency": (ours["currency"] != "USD").sum()}
    bounds = [sample_module.DROPPED_BELOW, sample_module.AMOUNT_CHANGED_BELOW, sample_module.STATUS_FLIPPED_BELOW,
              sample_module.CURRENCY_CHANGED_BELOW]
    shares = dict(zip(observed, [bounds[0], *(b - a for a, b in zip(bounds, bounds[1:], strict=False))],
                      strict=True))
    for change, share in shares.items():
        expected = n * share
        assert abs(observed[change] - expected) < 4 * (expected * (1 - share)) ** 0.5, (change, observed, shares)
    assert statement.height - ours.height == sample_module.NEVER_RECEIVED_ROWS


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


# ---------------------------------------------------------------- the SAMPLE statement


def _keys(statement: pl.DataFrame) -> list[tuple[str, str]]:
    """(click_id, transaction_id) of each row as read_statement reads them."""
    return read_statement(statement).select("click_id", "transaction_id").rows()


def test_sample_statement_lists_a_retried_or_later_recorded_refusal_once(tmp_path):
    """Refused postbacks retried with the same key, a refusal whose key was recorded later, and an
    unfilled macro sent twice: the sample lists each key once, so it reconciles."""
    from pipeline.reconciliation import sample_statement

    data = make_data_dir(tmp_path / "data")
    b = LogBuilder()
    for n in range(1, 31):
        b.click(cid(n))
        if n <= 3:  # refused twice (a wrong key, then none), then recorded with the same key
            b.postback(cid(n), amount="9", error="invalid_api_key")
            b.postback(cid(n), amount="9", error="api_key_required")
        if n != 4:
            b.postback(cid(n), amount=f"{n}.00")
    for _ in range(3):  # retried, never recorded
        b.postback(cid(4), amount="4", transaction_id="T-4", error="invalid_api_key", key_partner_id="acme")
        b.postback("{click_id}", amount="12", error="click_not_found", http_status=404, key_partner_id="acme")
    b.write(data)
    wh = pipeline.run(data).warehouse
    recorded = set(wh.conversions.select("click_id", "transaction_id").rows())
    for seed in range(1, 6):
        statement = sample_statement(wh, "acme", seed=seed)
        keys = _keys(statement)
        assert len(keys) == len(set(keys)), f"seed {seed}: a key is listed twice"
        assert {(cid(4), "T-4"), ("{click_id}", "{click_id}")} <= set(keys)
        assert len(set(keys) - recorded) == 4  # the two refusals and the two never-received ids
        result = pipeline.reconcile(wh, partner="acme", statement=statement)
        assert result.rows.filter(pl.col("outcome") == "missing_ours").height == 4


REFUSALS = ("click_not_found", "invalid_api_key", "api_key_required", "wrong_path")
PARTNER_OFFERS = {partner: offer for offer, (partner, *_rest) in OFFERS.items()}
attempts = st.lists(st.tuples(st.sampled_from(("recorded", *REFUSALS)), st.sampled_from((None, "T1", "T2")),
                              st.sampled_from((None, *PARTNER_OFFERS))), max_size=4)
log_specs = st.lists(st.tuples(st.sampled_from(list(PARTNER_OFFERS)), attempts, st.integers(0, 30)),
                     min_size=1, max_size=10)


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(spec=log_specs, macros=st.integers(0, 3), seed=st.integers(0, 10_000), days=st.integers(0, 3))
def test_sample_statement_never_lists_a_key_twice(spec, macros, seed, days):
    """For any log (retries, refusals later recorded, several transaction ids per click, other
    partners' keys, unfilled macros) and any partner, seed and period: each key once, it
    reconciles, and no missing_ours row of a click id the log holds is called never_received."""
    from pipeline.reconciliation import explain_missing_ours, sample_statement

    b = LogBuilder()
    for n, (partner, tries, hours) in enumerate(spec, start=1):
        b.now += timedelta(hours=hours)
        b.click(cid(n), offer_id=PARTNER_OFFERS[partner])
        recorded: set[str | None] = set()
        for what, txn, key_partner in tries:
            if what == "recorded":
                b.postback(cid(n), transaction_id=txn, amount="5",
                           result="duplicate" if txn in recorded else None)
                recorded.add(txn)
            elif what == "wrong_path":
                b.unrouted("/postback-old", cid(n))
            elif what == "click_not_found":  # a mistyped click id, retried as is
                b.postback(cid(1000 + n), transaction_id=txn, amount="5", error=what, key_partner_id=partner)
            else:
                b.postback(cid(n), transaction_id=txn, amount="5", error=what, key_partner_id=key_partner)
    for _ in range(macros):
        b.postback("{click_id}", amount="12", error="click_not_found", key_partner_id=spec[0][0])
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data_dir(Path(tmp) / "data")
        b.write(data)
        wh = pipeline.run(data).warehouse
        held = set(wh.clicks["click_id"]) | set(wh.conversions["click_id"]) | set(
            wh.postback_issues["click_id"].drop_nulls())
        last = b.now.date()
        for partner in PARTNER_OFFERS:
            statement = sample_statement(wh, partner, seed=seed, start=last - timedelta(days=days), end=last)
            keys = _keys(statement)
            assert len(keys) == len(set(keys)), (partner, sorted(keys))
            result = pipeline.reconcile(wh, partner=partner, statement=statement)
            why = explain_missing_ours(result, wh)
            assert why.height == result.rows.filter(pl.col("outcome") == "missing_ours").height
            assert not set(why.filter(pl.col("reason") == "never_received")["click_id"]) & held


# ---------------------------------------------------------------- why we do not have a row


@pytest.fixture(scope="module")
def five_days(tmp_path_factory):
    """acme conversions on 05-01 and 05-05, moustache's, clicks without postbacks, a refusal."""
    data = make_data_dir(tmp_path_factory.mktemp("why") / "data")
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="10")  # 05-01
    b.now = T0 + timedelta(days=4)
    b.click(cid(2))
    b.postback(cid(2), amount="20")
    b.click(cid(3), offer_id="moustache-survey")
    b.postback(cid(3), amount="30", dialect="publisher")
    b.click(cid(4))
    b.postback(cid(4), transaction_id="T1", amount="40")
    b.click(cid(5))  # no postback
    b.click(cid(6), offer_id="moustache-survey")  # no postback
    b.click(cid(7))
    b.postback(cid(7), amount="70", error="invalid_api_key")
    b.write(data)
    pipeline.run(data)
    return data


WHY_STATEMENT = f"""click_id,transaction_id,status,amount,currency,date
{cid(1)},,approved,10,USD,2024-05-01
{cid(2)},,approved,20,USD,2024-05-05
{cid(3)},,approved,30,USD,2024-05-05
{cid(4)},T2,approved,40,USD,2024-05-05
{cid(5)},,approved,50,USD,2024-05-05
{cid(6)},,approved,60,USD,2024-05-05
{cid(7)},,approved,70,USD,2024-05-05
{cid(9)},,approved,90,USD,2024-05-05
"""


def test_missing_ours_rows_say_what_the_log_holds(five_days, tmp_path):
    """never_received only for a click id the log never saw; a conversion outside the period
    names its day; other partners, other transaction ids and clicks without postbacks are said."""
    from pipeline.reconciliation import explain_missing_ours

    path = tmp_path / "acme.csv"
    path.write_text(WHY_STATEMENT, encoding="utf-8")
    result = pipeline.reconcile(five_days, partner="acme", statement=path, start="2024-05-05", end="2024-05-05")
    why = explain_missing_ours(result, pipeline.load(five_days))
    reasons = dict(why.select("click_id", "reason").rows())
    assert reasons == {cid(1): "outside_period", cid(3): "conversion_of_another_partner",
                       cid(4): "other_transaction_id", cid(5): "click_without_postback",
                       cid(6): "click_of_another_partner", cid(7): "wrong_api_key", cid(9): "never_received"}
    detail = dict(why.select("click_id", "detail").rows())
    assert "conversion day (UTC) is 2024-05-01" in detail[cid(1)] and "2024-05-05 .. 2024-05-05" in detail[cid(1)]
    assert "partner moustache" in detail[cid(3)]
    assert "transaction id T1" in detail[cid(4)] and "not T2" in detail[cid(4)]
    assert "offer acme-shop" in detail[cid(5)] and "partner moustache" in detail[cid(6)]
    assert why.filter(pl.col("click_id") == cid(7))["error"].to_list() == ["invalid_api_key"]
    assert why.filter(pl.col("reason") != "wrong_api_key")["error"].null_count() == why.height - 1
    # the warehouse reconciled against is the default
    assert explain_missing_ours(result).equals(why)
    # with the statement's own dates (the default without --start/--end), 05-01 is in the period
    own = pipeline.reconcile(five_days, partner="acme", statement=path)
    assert (own.start, own.end) == (T0.date(), T0.date() + timedelta(days=4))
    assert dict(own.rows.select("click_id", "outcome").rows())[cid(1)] == "matched"


def test_reconcile_command_explains_rows_outside_its_start_and_end(five_days, tmp_path, capsys):
    path = tmp_path / "acme.csv"
    path.write_text(WHY_STATEMENT, encoding="utf-8")
    assert main(["reconcile", "--data", str(five_days), "--partner", "acme", "--statement", str(path),
                 "--start", "2024-05-05", "--end", "2024-05-05"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    row = next(i for i, line in enumerate(lines) if line.split()[:2] == ["missing_ours", cid(1)])
    assert "why: outside_period: We have this conversion: its conversion day (UTC) is 2024-05-01" in lines[row + 1]
    assert out.count("never_received") == 1 and f"missing_ours       {cid(9)}" in out
    for n, reason in ((5, "click_without_postback"), (7, "wrong_api_key")):
        row = next(i for i, line in enumerate(lines) if line.split()[:2] == ["missing_ours", cid(n)])
        assert f"why: {reason}: " in lines[row + 1]


# ---------------------------------------------------------------- the command's summary


def test_reconcile_command_names_unconverted_rows_lists_unmatched_ones_and_mentions_out(tmp_path, capsys):
    data = make_data_dir(tmp_path / "data")
    b = LogBuilder()
    for n in range(1, 31):
        b.click(cid(n))
        b.postback(cid(n), amount=f"{n}.00", currency="BRL" if n in (1, 11) else None)  # no BRL rate
    b.write(data)
    pipeline.run(data)
    day = T0.date().isoformat()
    lines = ["click_id,status,amount,currency,date"]
    lines += [f"{cid(n)},approved,{n}.00,{'BRL' if n == 1 else 'USD'},{day}" for n in range(1, 11)]
    lines += [f"{cid(100 + n)},approved,1.00,USD,{day}" for n in range(3)]  # never received
    statement = tmp_path / "acme.csv"
    statement.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["reconcile", "--data", str(data), "--partner", "acme", "--statement", str(statement)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "  matched: 1 row in BRL has no fx rate for its day: not in the totals" in out
    assert "  missing_theirs: 1 row in BRL has no fx rate for its day: not in the totals" in out
    # 3 missing_ours and 20 missing_theirs (11..30): the first 20 are listed, outcome by outcome
    assert "rows not matched (23 of 33, the first 20):" in out and "  ... and 3 more" in out
    listing = out.split("rows not matched")[1].splitlines()
    listed = [line.split()[1] for line in listing if line.startswith("  missing_")]
    assert listed == [cid(100), cid(101), cid(102), *[cid(n) for n in range(11, 28)]]
    assert "missing_ours       " + cid(100) + "   theirs approved 1.00 USD " + day in out
    assert "missing_theirs     " + cid(11) + "   ours approved 11.00 BRL " + day in out
    assert "all 33 rows, with every column: add --out FILE.csv" in out

    written = tmp_path / "rows.csv"
    assert main([*args, "--out", str(written)]) == 0
    out = capsys.readouterr().out
    assert f"all 33 rows, with every column: written to {written}" in out and "--out FILE" not in out
    assert pl.read_csv(written).height == 33
