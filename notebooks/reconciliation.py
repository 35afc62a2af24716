import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="clickledger reconciliation")

with app.setup:
    from datetime import timedelta

    import altair as alt
    import marimo as mo
    import polars as pl

    import pipeline
    from pipeline.notebook_support import (
        cli_arg,
        default_data_dir,
        display_money,
        load_or_explain,
        pipeline_run_button,
    )
    from pipeline.reconciliation import (
        DEFAULT_COLUMNS,
        MISSING_OURS_REASONS,
        OUTCOMES,
        REQUIRED,
        csv_safe_bytes,
        daily_totals,
        explain_missing_ours,
        guess_columns,
        read_statement_csv,
        sample_statement,
        totals_by_status,
    )


@app.function
def money(value: object, currency: str) -> str:
    return f"{float(value or 0):,.2f} {currency}"


@app.function
def unconverted(rows: pl.DataFrame, column: str) -> str:
    missing = rows[column].null_count()
    return f" ({missing} without fx rate)" if missing else ""


@app.cell
def _():
    mo.md("""
    # Reconciliation

    A partner's statement against our conversions, one row per `(click_id, transaction_id)`:
    **matched**, **missing_ours** (only in their statement), **missing_theirs** (only ours),
    or an **amount / status / currency mismatch**. Amounts compare to the cent; base-currency
    figures use the rate of the conversion's UTC day. The rules live in `pipeline.reconcile`;
    this page shows what it finds.
    """)
    return


@app.cell
def _():
    data_input = mo.ui.text(value=default_data_dir(), label="Data directory", full_width=True)
    run_button = pipeline_run_button()
    data_input
    return data_input, run_button


@app.cell
def _(data_input, run_button):
    wh, _instead = load_or_explain(data_input.value, run_button)
    mo.stop(wh is None, _instead)
    partners = sorted(p for p in wh.scan("conversions").select(pl.col("partner_id").unique()).collect()
                      .to_series().to_list() if p)
    mo.stop(not partners, mo.callout(
        "No conversions yet: nothing to reconcile. Send postbacks to the receiver, then run the pipeline.",
        kind="info"))
    last = wh.scan("conversions").select(pl.col("converted_at").max()).collect().item().date()
    return last, partners, wh


@app.cell
def _(last, partners):
    _wanted = cli_arg("partner")
    partner = mo.ui.dropdown(partners, value=_wanted if _wanted in partners else partners[0], label="Partner")
    period = mo.ui.date_range(start=last - timedelta(days=60), stop=last, value=(last - timedelta(days=6), last),
                              label="Period")
    tz = mo.ui.dropdown(["UTC", "Europe/London", "Europe/Berlin", "America/New_York", "Asia/Singapore"],
                        value="UTC", label="Statement time zone")
    basis = mo.ui.dropdown({"conversion time": "conversion", "click time": "click"},
                           value="conversion time", label="Its days are our")
    mo.vstack([mo.hstack([partner, period], justify="start", gap=2),
               mo.hstack([tz, basis], justify="start", gap=2)])
    return basis, partner, period, tz


@app.cell
def _():
    path_input = mo.ui.text(value=cli_arg("statement") or "", placeholder="/path/to/statement.csv",
                            label="Statement CSV path", full_width=True)
    upload = mo.ui.file(filetypes=[".csv"], label="or upload the CSV")
    use_sample = mo.ui.checkbox(value=True, label="No statement at hand? Try it with a SAMPLE statement")
    mo.vstack([mo.md("### The partner's statement"), mo.hstack([path_input, upload], widths=[4, 1]),
               use_sample])
    return path_input, upload, use_sample


@app.cell
def _(partner, path_input, period, upload, use_sample, wh):
    _statement_error, is_sample, statement_raw = None, False, None
    if upload.value:
        _source = f"uploaded file `{upload.name()}`"
    elif path_input.value.strip():
        _source = f"`{path_input.value.strip()}`"
    elif use_sample.value:
        _source, is_sample = "a generated SAMPLE", True
    else:
        _source = None
    try:
        if is_sample:
            statement_raw = sample_statement(wh, partner.value, start=period.value[0], end=period.value[1])
        elif _source is not None:
            statement_raw = read_statement_csv(upload.contents() if upload.value else path_input.value.strip())
    except pipeline.PipelineError as exc:
        _statement_error = str(exc)
    mo.stop(_source is None, mo.callout(mo.md(
        "**No statement yet.** Type the path of the partner's CSV statement, upload it, or tick "
        "*Try it with a SAMPLE statement* to see every outcome on our own data."), kind="info"))
    mo.stop(_statement_error is not None, mo.callout(mo.md(
        f"**The statement {_source} could not be read:** {_statement_error}"), kind="danger"))
    if is_sample:
        _note = mo.callout(mo.md(
            "**SAMPLE statement, not a partner's figures.** Generated from our own conversions of "
            f"**{partner.value}** with deliberate differences (rows dropped, amounts, statuses and "
            "currencies changed, click ids we refused or never received) so that every outcome shows. "
            f"{statement_raw.height} rows. Load the real statement above to reconcile it."), kind="warn")
    else:
        _note = mo.md(f"Statement: {_source}, {statement_raw.height} rows, columns "
                      f"`{', '.join(statement_raw.columns)}`.")
    _note
    return is_sample, statement_raw


@app.cell
def _(is_sample):
    # A partner's statement covers its own days: the period above would cut it (every row
    # missing_ours). The SAMPLE is made for the period above, so it keeps the picker.
    statement_period = mo.ui.checkbox(
        value=not is_sample, label="Reconcile over the statement's own first to last date (else the period above)")
    statement_period
    return (statement_period,)


@app.cell
def _(statement_raw):
    _guess = {ours: theirs or "(none)" for ours, theirs in guess_columns(statement_raw.columns).items()}
    _options = ["(none)", *statement_raw.columns]
    mapping_ui = mo.ui.dictionary({ours: mo.ui.dropdown(_options, value=_guess[ours], label=ours)
                                   for ours in DEFAULT_COLUMNS})
    _unmapped = [ours for ours in REQUIRED if _guess[ours] == "(none)"]
    _title = ("Column mapping: map " + ", ".join(_unmapped) + " to the statement's columns" if _unmapped
              else "Column mapping (preselected from the statement's names; change it if they differ)")
    mo.accordion({_title: mapping_ui}, expanded=bool(_unmapped))
    return (mapping_ui,)


@app.cell
def _(basis, mapping_ui, partner, period, statement_period, statement_raw, tz, wh):
    _columns = {ours: theirs for ours, theirs in mapping_ui.value.items() if theirs != "(none)"}
    _columns["transaction_id"] = _columns.get("transaction_id", "(no transaction id)")
    _columns["date"] = _columns.get("date", "(no date)")
    # without a date column the statement has no days of its own: the period above applies
    _own_days = statement_period.value and _columns["date"] in statement_raw.columns
    _start, _end = (None, None) if _own_days else period.value
    try:
        result = pipeline.reconcile(wh, partner=partner.value, statement=statement_raw, columns=_columns,
                                    date_basis=basis.value, tz=tz.value, start=_start, end=_end)
        _error = None
    except pipeline.PipelineError as exc:
        result, _error = None, str(exc).replace("Map it with --column", "Map it in *Column mapping* above (CLI: --column")
    mo.stop(_error is not None, mo.callout(mo.md(f"**The statement cannot be reconciled:** {_error}"),
                                           kind="danger"))
    return (result,)


@app.cell
def _(is_sample, result):
    _s = result.summary
    _rows = result.rows
    _base = result.base_currency
    _ours = _rows.filter(pl.col("ours_amount").is_not_null())
    _theirs = _rows.filter(pl.col("theirs_amount").is_not_null())
    _ours_base = _ours["ours_amount_base"].sum()
    _theirs_base = _theirs["theirs_amount_base"].sum()
    _diff = float(_theirs_base or 0) - float(_ours_base or 0)
    _matched = int(_s.filter(pl.col("outcome") == "matched")["rows"].sum())
    _period = f"{result.start or 'the beginning'} to {result.end or 'now'}"
    mo.vstack([
        mo.md(f"## {result.partner}, {_period} ({result.date_basis} days, {result.tz})"
              + (" *(SAMPLE statement)*" if is_sample else "")),
        mo.hstack([
            mo.stat(money(_ours_base, _base), label="Ours", bordered=True,
                    caption=f"{_ours.height} conversions" + unconverted(_ours, "ours_amount_base")),
            mo.stat(money(_theirs_base, _base), label="Theirs", bordered=True,
                    caption=f"{_theirs.height} statement rows" + unconverted(_theirs, "theirs_amount_base")),
            mo.stat(money(_diff, _base), label="Theirs minus ours",
                    caption="they claim more" if _diff > 0 else ("we have more" if _diff < 0 else "no gap"),
                    bordered=True),
            mo.stat(f"{_matched} / {_rows.height}", label="Rows matched",
                    caption=f"{_rows.height - _matched} to look at", bordered=True),
        ], widths="equal", gap=1),
    ])
    return


@app.cell
def _(result):
    _daily = (display_money(daily_totals(result)).filter(pl.col("day").is_not_null())
              .with_columns(pl.col("day").dt.strftime("%b %d").alias("label")))
    _x = alt.X("label:O", title="day", sort=alt.EncodingSortField("day", op="min"), axis=alt.Axis(labelAngle=0))
    _base = result.base_currency
    _lines = alt.Chart(_daily).mark_line(point=True).encode(
        x=_x,
        y=alt.Y("amount_base:Q", title=f"amount ({_base})"),
        color=alt.Color("side:N", title="", scale=alt.Scale(domain=["ours", "theirs"],
                                                            range=["#1565c0", "#ef6c00"])),
        tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"), "side:N", "count:Q",
                 alt.Tooltip("amount_base:Q", format=",.2f")],
    )
    _wide = _daily.pivot(on="side", index="day", values="amount_base").fill_null(0)
    for _side in ("ours", "theirs"):
        if _side not in _wide.columns:
            _wide = _wide.with_columns(pl.lit(0.0).alias(_side))
    _gap = _wide.with_columns((pl.col("theirs") - pl.col("ours")).round(2).alias("gap"),
                              pl.col("day").dt.strftime("%b %d").alias("label"))
    _bars = alt.Chart(_gap).mark_bar(size=28).encode(
        x=_x,
        y=alt.Y("gap:Q", title="theirs - ours"),
        color=alt.condition("datum.gap > 0", alt.value("#ef6c00"), alt.value("#1565c0")),
        tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"), alt.Tooltip("gap:Q", format=",.2f")])
    _chart = alt.vconcat(
        _lines.properties(width=840, height=220,
                          title="Daily totals, ours vs theirs: where the lines part, a gap opened"),
        _bars.properties(width=840, height=90, title=f"The gap per day ({_base})"),
    )
    _chart
    return


@app.cell
def _(result):
    _plain = dict(selection=None, show_column_summaries=False, show_download=False)
    mo.vstack([
        mo.md("### Ours and theirs side by side"),
        mo.ui.tabs({
            "per outcome": mo.ui.table(display_money(result.summary), **_plain),
            "per status": mo.ui.table(display_money(totals_by_status(result)), **_plain),
            "per outcome and original currency": mo.ui.table(display_money(result.totals), page_size=20,
                                                              **_plain),
        }),
        mo.md(f"Amounts per outcome and status are in {result.base_currency}; *per outcome and original "
              "currency* also shows each currency's own amounts. `rows_without_fx_rate`: rows whose "
              "currency has no rate for that day (counted, never summed as zero)."),
    ])
    return


@app.cell
def _(result):
    _present = [o for o in OUTCOMES if o in set(result.rows["outcome"])]
    outcomes = mo.ui.multiselect(_present, value=[o for o in _present if o != "matched"],
                                 label="Show outcomes")
    mo.vstack([mo.md("### Every row and its outcome"), outcomes])
    return (outcomes,)


@app.cell
def _(outcomes, result):
    _shown = result.rows.filter(pl.col("outcome").is_in(outcomes.value or result.rows["outcome"].unique()))
    mo.ui.table(display_money(_shown), label=f"{_shown.height} of {result.rows.height} rows (search and "
                "filter any column from its header)", page_size=10, selection=None,
                freeze_columns_left=["click_id"], show_column_summaries=False)
    return


@app.cell
def _(result, wh):
    why = explain_missing_ours(result, wh)
    # An empty answer is a result, not a stop: the cell shows it (and Jupyter runs on past it).
    if why.is_empty():
        _shown = mo.callout("Nothing is missing on our side: every statement row is among our conversions.",
                            kind="success")
    else:
        _counts = why.group_by("reason").agg(pl.len().alias("rows")).sort("rows", descending=True)
        _shown = mo.vstack([
            mo.md("### Why we do not have their *missing_ours* rows"),
            mo.md(", ".join(f"**{r['reason']}** {r['rows']}" for r in _counts.iter_rows(named=True))),
            mo.ui.table(display_money(why.select("click_id", "transaction_id", "reason", "detail", "theirs_amount",
                                                 "theirs_currency", "last_attempt_at", "route", "error")),
                        page_size=10, selection=None, show_column_summaries=False, wrapped_columns=["detail"],
                        column_widths={"detail": 380, "click_id": 170, "transaction_id": 110}),
            mo.md("\n".join(f"- `{_reason}`: {_meaning}" for _reason, _meaning in MISSING_OURS_REASONS.items()
                            if _reason in set(why["reason"]))
                  + "\n\nAny other reason is a refused postback's: what to tell the partner for each, the "
                  "**troubleshooting** notebook."),
        ])
    _shown
    return (why,)


@app.cell
def _(partner, result):
    mo.download(data=lambda: csv_safe_bytes(result.rows),
                filename=f"reconciliation-{partner.value}-{result.start}-{result.end}.csv",
                mimetype="text/csv", label="Download the outcome (CSV, safe to open in a spreadsheet)")
    return


if __name__ == "__main__":
    app.run()
