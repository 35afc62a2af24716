import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="clickledger overview")

with app.setup:
    from pathlib import Path

    import altair as alt
    import marimo as mo
    import polars as pl

    from pipeline import views
    from pipeline.notebook_support import default_data_dir, display_money, warehouse_or_hint





@app.cell
def _():
    mo.md("""
    # Overview

    Clicks, conversions and money by day, offer and affiliate, from the warehouse that
    `clickledger run` derives from the receiver's log. Money is in the base currency;
    days are UTC. *EPC* is what affiliates and users earn per click.
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
    return (wh,)


@app.cell
def _(wh):
    daily = views.kpis(wh, by=["day"])
    totals = daily.select(pl.col("clicks", "conversions").sum(), pl.col("revenue", "payouts", "margin").sum())
    row = totals.row(0, named=True)
    rate = row["conversions"] / row["clicks"] if row["clicks"] else 0.0
    base = wh.conversions["base_currency"][0] if wh.conversions.height else "USD"
    mo.hstack([
        mo.stat(f"{row['clicks']:,}", label="Clicks"),
        mo.stat(f"{row['conversions']:,}", label="Counted conversions", caption=f"{rate:.1%} of clicks"),
        mo.stat(f"{row['revenue']:,.2f} {base}", label="Revenue"),
        mo.stat(f"{row['payouts']:,.2f} {base}", label="Affiliate and user payouts"),
        mo.stat(f"{row['margin']:,.2f} {base}", label="Network margin"),
    ], widths="equal")
    return base, daily


@app.cell
def _(base, daily):
    mo.stop(daily.is_empty(), mo.callout("No clicks or conversions yet.", kind="info"))
    shown = display_money(daily)
    long = shown.unpivot(index="day", on=["revenue", "payouts", "margin"], variable_name="measure",
                         value_name=base)
    chart = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("yearmonthdate(day):T", title="day (UTC)", axis=alt.Axis(format="%b %d")), y=alt.Y(f"{base}:Q"), color="measure:N",
        tooltip=["day:T", "measure:N", f"{base}:Q"],
    ).properties(width=760, height=260, title="Money by day")
    mo.vstack([mo.ui.altair_chart(chart), mo.ui.table(shown, label="By day", page_size=10)])
    return


@app.cell
def _():
    grouping = mo.ui.dropdown({"offer": "offer_id", "affiliate": "affiliate_id", "partner": "partner_id"},
                              value="offer", label="Break down by")
    grouping
    return (grouping,)


@app.cell
def _(grouping, wh):
    breakdown = display_money(views.kpis(wh, by=[grouping.value]))
    mo.ui.table(breakdown, label=f"By {grouping.selected_key}", page_size=10)
    return


@app.cell
def _(wh):
    funnel = display_money(views.status_funnel(wh))
    funnel_chart = alt.Chart(funnel).mark_bar().encode(
        x=alt.X("conversions:Q"), y=alt.Y("status:N", sort=["approved", "pending", "rejected"]),
        color=alt.Color("status:N", scale=alt.Scale(domain=["approved", "pending", "rejected"],
                                                     range=["#2e7d32", "#f9a825", "#c62828"])),
        tooltip=["status", "conversions", "counted", "amount_base"],
    ).properties(width=380, height=120, title="Status funnel")
    mix = display_money(views.currency_mix(wh))
    missing = mix.filter(pl.col("without_rate") > 0)
    note = (mo.callout(mo.md("Conversions without an fx rate do not count: "
                             + ", ".join(f"**{r['currency']}** ({r['without_rate']})"
                                         for r in missing.rows(named=True))
                             + ". Add their rates to `fx_rates.csv` and re-run."), kind="warn")
            if missing.height else mo.md(""))
    mo.vstack([mo.hstack([mo.ui.altair_chart(funnel_chart), mo.ui.table(funnel, label="Funnel")]),
               mo.md("### Currency mix"), mo.ui.table(mix, label="Currencies"), note])
    return


@app.cell
def _(wh):
    issues = views.issues_by_partner(wh, top=5)
    mo.stop(issues.is_empty(), mo.callout("No postback issues: every postback recorded a conversion.",
                                          kind="success"))
    issue_chart = alt.Chart(issues.with_columns(pl.col("partner_id").fill_null("(unknown)"))).mark_bar().encode(
        x=alt.X("sum(issues):Q", title="issues"), y=alt.Y("partner_id:N", sort="-x", title="partner"),
        color="reason:N", tooltip=["partner_id", "reason", "issues"],
    ).properties(width=760, height=200, title="Top partners by postback issues")
    mo.vstack([mo.ui.altair_chart(issue_chart),
               mo.md("Details and the fix to tell each partner: the **troubleshooting** notebook.")])
    return


if __name__ == "__main__":
    app.run()
