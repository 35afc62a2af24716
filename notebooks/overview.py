import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="clickledger overview")

with app.setup:
    import altair as alt
    import marimo as mo
    import polars as pl

    from pipeline import views
    from pipeline.notebook_support import (
        default_data_dir,
        display_money,
        load_or_explain,
        pipeline_run_button,
    )


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
    run_button = pipeline_run_button()
    data_input
    return data_input, run_button


@app.cell
def _(data_input, run_button):
    wh, _instead = load_or_explain(data_input.value, run_button)
    mo.stop(wh is None, _instead)
    return (wh,)


@app.cell
def _(wh):
    daily = views.kpis(wh, by=["day"])
    _row = daily.select(pl.col("clicks", "conversions").sum(), pl.col("revenue", "payouts", "margin").sum()).row(
        0, named=True)
    _rate = _row["conversions"] / _row["clicks"] if _row["clicks"] else 0.0
    _epc = float(_row["payouts"]) / _row["clicks"] if _row["clicks"] else 0.0
    base = wh.base_currency
    _days = f"{daily['day'].min()} to {daily['day'].max()}" if daily.height else "no days yet"
    mo.vstack([
        mo.md(f"**{_days}** (UTC), {wh.scan('conversions').select(pl.len()).collect().item():,} conversions "
              f"in all, {wh.scan('postback_issues').select(pl.len()).collect().item():,} postback issues"),
        mo.hstack([
            mo.stat(f"{_row['clicks']:,}", label="Clicks", bordered=True),
            mo.stat(f"{_row['conversions']:,}", label="Counted conversions", caption=f"{_rate:.1%} of clicks",
                    bordered=True),
            mo.stat(f"{_epc:,.2f} {base}", label="EPC", caption="affiliate and user payouts per click",
                    bordered=True),
        ], widths="equal", gap=1),
        mo.hstack([
            mo.stat(f"{_row['revenue']:,.2f} {base}", label="Revenue", caption="counted conversions",
                    bordered=True),
            mo.stat(f"{_row['payouts']:,.2f} {base}", label="Payouts", caption="to affiliates and users",
                    bordered=True),
            mo.stat(f"{_row['margin']:,.2f} {base}", label="Network margin", caption="revenue minus payouts",
                    bordered=True),
        ], widths="equal", gap=1),
    ])
    return base, daily


@app.cell
def _(base, daily):
    mo.stop(daily.is_empty(), mo.callout(
        "No clicks or conversions yet: send traffic to the receiver (or `make demo`), then run the pipeline.",
        kind="info"))
    _shown = display_money(daily)
    _long = _shown.unpivot(index="day", on=["revenue", "payouts", "margin"], variable_name="measure",
                           value_name=base)
    _chart = alt.Chart(_long).mark_line(point=True).encode(
        x=alt.X("yearmonthdate(day):T", title="day (UTC)", axis=alt.Axis(format="%b %d")),
        y=alt.Y(f"{base}:Q"),
        color=alt.Color("measure:N", title="", scale=alt.Scale(domain=["revenue", "payouts", "margin"],
                                                               range=["#1565c0", "#ef6c00", "#2e7d32"])),
        tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"), "measure:N", alt.Tooltip(f"{base}:Q", format=",.2f")],
    ).properties(width=820, height=240, title="Money by day")
    mo.vstack([mo.md("## By day"), _chart,
               mo.ui.table(_shown, page_size=10, selection=None, show_column_summaries=False)])
    return


@app.cell
def _():
    grouping = mo.ui.dropdown({"offer": "offer_id", "affiliate": "affiliate_id", "partner": "partner_id"},
                              value="offer", label="Break down by")
    mo.vstack([mo.md("## By offer, affiliate or partner"), grouping])
    return (grouping,)


@app.cell
def _(grouping, wh):
    breakdown = display_money(views.kpis(wh, by=[grouping.value]))
    mo.ui.table(breakdown, page_size=10, selection=None, show_column_summaries=False)
    return (breakdown,)


@app.cell
def _(wh):
    funnel = display_money(views.status_funnel(wh))
    _chart = alt.Chart(funnel).mark_bar().encode(
        x=alt.X("conversions:Q"), y=alt.Y("status:N", sort=["approved", "pending", "rejected"], title=""),
        color=alt.Color("status:N", legend=None, scale=alt.Scale(domain=["approved", "pending", "rejected"],
                                                                 range=["#2e7d32", "#f9a825", "#c62828"])),
        tooltip=["status", "conversions", "counted", alt.Tooltip("amount_base:Q", format=",.2f")],
    ).properties(width=300, height=110, title="Conversions by status")
    mo.vstack([
        mo.md("## Status funnel\n\nOnly approved conversions count (and only with an fx rate for their day)."),
        mo.hstack([_chart, mo.ui.table(funnel, selection=None, show_column_summaries=False)], widths=[1, 1],
                  align="center"),
    ])
    return (funnel,)


@app.cell
def _(wh):
    mix = display_money(views.currency_mix(wh))
    missing = mix.filter(pl.col("without_rate") > 0)
    _note = (mo.callout(mo.md("Conversions without an fx rate do not count: "
                              + ", ".join(f"**{r['currency']}** ({r['without_rate']})"
                                          for r in missing.rows(named=True))
                              + ". Add their rates to `fx_rates.csv` and run the pipeline again."), kind="warn")
             if missing.height else mo.md(""))
    mo.vstack([mo.md("## Currency mix"), mo.ui.table(mix, selection=None, show_column_summaries=False), _note])
    return missing, mix


@app.cell
def _(wh):
    top_issues = views.issues_by_partner(wh, top=5).with_columns(pl.col("partner_id").fill_null("(unknown)"))
    if top_issues.is_empty():
        _out = mo.callout("No postback issues: every postback recorded a counting conversion.", kind="success")
    else:
        _chart = alt.Chart(top_issues).mark_bar().encode(
            x=alt.X("sum(issues):Q", title="issues"), y=alt.Y("partner_id:N", sort="-x", title="partner"),
            color=alt.Color("reason:N", scale=alt.Scale(scheme="tableau20")),
            tooltip=["partner_id", "reason", "issues"],
        ).properties(width=560, height=180, title="Top partners by postback issues")
        _out = mo.vstack([_chart, mo.md("(unknown): no click and no key told us the partner. Details and the fix "
                                        "to tell each partner: the **troubleshooting** notebook.")])
    mo.vstack([mo.md("## Top partners by issues"), _out])
    return (top_issues,)


@app.cell
def _(wh):
    delivery_states = views.deliveries_by_state(wh)
    if delivery_states.is_empty():
        _out = mo.md("_Nothing forwarded: no publisher endpoint in config.toml (`[[affiliates.postbacks]]`, "
                     "see docs/forwarding.md), or `clickledger forward` has not run._")
    else:
        _chart = alt.Chart(delivery_states).mark_bar().encode(
            x=alt.X("sum(deliveries):Q", title="deliveries"), y=alt.Y("affiliate:N", title="publisher"),
            color=alt.Color("state:N", scale=alt.Scale(
                domain=["delivered", "pending", "failed", "exhausted", "stopped"],
                range=["#2e7d32", "#90a4ae", "#f9a825", "#c62828", "#6a1b9a"])),
            tooltip=["affiliate", "state", "deliveries", "attempts", "points"],
        ).properties(width=560, height=120, title="Deliveries to publishers, by state")
        _out = mo.vstack([_chart, mo.ui.table(delivery_states, selection=None, show_column_summaries=False),
                          mo.md("Each one, its attempts and errors: `clickledger deliveries`, or a click's "
                                "story in the **troubleshooting** notebook.")])
    mo.vstack([mo.md("## Deliveries to publishers"), _out])
    return (delivery_states,)


if __name__ == "__main__":
    app.run()
