import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="clickledger reconciliation")

with app.setup:
    import io
    from datetime import timedelta
    from pathlib import Path

    import altair as alt
    import marimo as mo
    import polars as pl

    import pipeline
    from pipeline.notebook_support import default_data_dir, display_money, warehouse_or_hint
    from pipeline.reconciliation import (
        DEFAULT_COLUMNS,
        daily_totals,
        explain_missing_ours,
        safe_cell,
        sample_statement,
        totals_by_status,
    )





@app.function
def spreadsheet_safe(frame: pl.DataFrame) -> bytes:
    """CSV bytes with every text cell neutralised against formula injection (pipeline's rule)."""
    text_cols = [c for c, t in frame.schema.items() if t == pl.String]
    safe = frame.with_columns(pl.col(c).map_elements(safe_cell, return_dtype=pl.String) for c in text_cols)
    buffer = io.BytesIO()
    safe.write_csv(buffer)
    return buffer.getvalue()


@app.cell
def _():
    mo.md("""
    # Reconciliation

    A partner's statement against our conversions, one row per `(click_id, transaction_id)`:
    **matched**, **missing_ours** (only in their statement), **missing_theirs** (only ours),
    or an **amount / status / currency mismatch**. Amounts compare to the cent; base-currency
    figures use the rate of the conversion's UTC day.
    """)
    return


@app.cell
def _():
    data_input = mo.ui.text(value=default_data_dir(), label="Data directory", full_width=True)
    data_input
    return (data_input,)


@app.cell
def _(data_input):
    data_dir = Path(data_input.value).expanduser()
    with mo.status.spinner(title="Loading the warehouse..."):
        wh, hint = warehouse_or_hint(data_dir)
    mo.stop(wh is None, mo.callout(mo.md(hint or ""), kind="warn"))
    partners = sorted(p for p in wh.conversions["partner_id"].unique().to_list() if p)
    mo.stop(not partners, mo.callout("No conversions yet: nothing to reconcile.", kind="info"))
    last = wh.conversions["converted_at"].max().date()
    return last, partners, wh


@app.cell
def _(last, partners):
    partner = mo.ui.dropdown(partners, value=partners[0], label="Partner")
    period = mo.ui.date_range(start=last - timedelta(days=6), stop=last, label="Period (statement days)")
    tz = mo.ui.dropdown(["UTC", "Europe/London", "Europe/Berlin", "America/New_York", "Asia/Singapore"],
                        value="UTC", label="Statement time zone")
    basis = mo.ui.dropdown({"conversion time": "conversion", "click time": "click"},
                           value="conversion time", label="Date basis")
    mo.hstack([partner, period, tz, basis], wrap=True)
    return basis, partner, period, tz


@app.cell
def _():
    path_input = mo.ui.text(placeholder="/path/to/statement.csv", label="Statement CSV path", full_width=True)
    upload = mo.ui.file(filetypes=[".csv"], label="or upload it")
    use_sample = mo.ui.checkbox(value=True, label="No statement? Try a generated SAMPLE statement")
    mo.vstack([mo.hstack([path_input, upload]), use_sample])
    return path_input, upload, use_sample


@app.cell
def _(partner, path_input, period, upload, use_sample, wh):
    if upload.value:
        statement_raw = pl.read_csv(io.BytesIO(upload.contents()), infer_schema=False)
        source = f"uploaded file {upload.name()}"
    elif path_input.value.strip():
        statement_raw = pl.read_csv(path_input.value.strip(), infer_schema=False)
        source = path_input.value.strip()
    elif use_sample.value:
        statement_raw = sample_statement(wh, partner.value, start=period.value[0], end=period.value[1])
        source = "a SAMPLE statement generated from our own conversions with deliberate differences"
    else:
        statement_raw = None
        source = None
    mo.stop(statement_raw is None, mo.callout(mo.md(
        "Load the partner's statement: a CSV path, an upload, or tick the sample box."), kind="info"))
    mo.md(f"Statement: **{source}**, {statement_raw.height} rows, columns `{', '.join(statement_raw.columns)}`.")
    return (statement_raw,)


@app.cell
def _(statement_raw):
    # Our name -> their column; names the statement already shares are preselected.
    options = ["(none)", *statement_raw.columns]
    mapping_ui = mo.ui.dictionary({
        ours: mo.ui.dropdown(options, value=theirs if theirs in statement_raw.columns else "(none)",
                             label=ours)
        for ours, theirs in DEFAULT_COLUMNS.items()
    })
    mo.accordion({"Column mapping (when the statement's names differ)": mapping_ui})
    return (mapping_ui,)


@app.cell
def _(basis, mapping_ui, partner, period, statement_raw, tz, wh):
    columns = {ours: theirs for ours, theirs in mapping_ui.value.items() if theirs != "(none)"}
    try:
        result = pipeline.reconcile(wh, partner=partner.value, statement=statement_raw, columns=columns,
                                    date_basis=basis.value, tz=tz.value, start=period.value[0],
                                    end=period.value[1])
        error = None
    except pipeline.PipelineError as exc:
        result, error = None, str(exc)
    mo.stop(error is not None, mo.callout(mo.md(f"**The statement cannot be reconciled:** {error}"),
                                          kind="danger"))
    return (result,)


@app.cell
def _(result):
    summary = display_money(result.summary)
    by_currency = display_money(result.totals)
    mo.vstack([
        mo.md(f"### Ours and theirs, {result.start} to {result.end} ({result.date_basis} days, {result.tz})"),
        mo.ui.table(summary, label="Per outcome (base currency)", selection=None),
        mo.ui.table(by_currency, label="Per outcome and original currency", selection=None),
        mo.ui.table(display_money(totals_by_status(result)), label="Per status, ours and theirs (base currency)",
                    selection=None),
    ])
    return


@app.cell
def _(result):
    daily = display_money(daily_totals(result))
    chart = alt.Chart(daily).mark_line(point=True).encode(
        x=alt.X("yearmonthdate(day):T", title="day", axis=alt.Axis(format="%b %d")), y=alt.Y("amount_base:Q", title=f"amount ({result.base_currency})"),
        color=alt.Color("side:N", scale=alt.Scale(domain=["ours", "theirs"], range=["#1565c0", "#ef6c00"])),
        tooltip=["day:T", "side:N", "count:Q", "amount_base:Q"],
    ).properties(width=760, height=260, title="Daily totals, ours vs theirs: where the lines part, a gap opened")
    mo.ui.altair_chart(chart)
    return


@app.cell
def _(result):
    outcomes = mo.ui.multiselect(sorted(set(result.rows["outcome"])), label="Show outcomes",
                                 value=[o for o in sorted(set(result.rows["outcome"])) if o != "matched"])
    outcomes
    return (outcomes,)


@app.cell
def _(outcomes, result):
    shown = result.rows.filter(pl.col("outcome").is_in(outcomes.value or list(set(result.rows["outcome"]))))
    mo.ui.table(display_money(shown), label=f"{shown.height} rows", page_size=15)
    return


@app.cell
def _(result, wh):
    why = explain_missing_ours(result, wh)
    mo.stop(why.is_empty(), mo.callout("Nothing is missing on our side.", kind="success"))
    mo.vstack([
        mo.md("### Why we do not have their missing_ours rows"),
        mo.ui.table(display_money(why.select("click_id", "transaction_id", "theirs_amount", "theirs_currency", "reason",
                                     "nearest_click_id", "last_attempt_at", "detail")), page_size=10),
        mo.md("`never_received`: no request with that click id reached us. The fix for each reason: "
              "the **troubleshooting** notebook."),
    ])
    return


@app.cell
def _(partner, result):
    mo.download(data=spreadsheet_safe(result.rows), filename=f"reconciliation-{partner.value}.csv",
                mimetype="text/csv", label="Download the outcome (CSV, safe to open in a spreadsheet)")
    return


if __name__ == "__main__":
    app.run()
