import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="clickledger troubleshooting")

with app.setup:
    from pathlib import Path

    import altair as alt
    import marimo as mo
    import polars as pl

    from pipeline.issues import fix_guide
    from pipeline.notebook_support import default_data_dir, display_money, warehouse_or_hint
    from pipeline.story import click_story, find_clicks





@app.cell
def _():
    mo.md("""
    # Troubleshooting postbacks

    Why a partner's postback did not become a conversion, and what to tell them.
    Everything here comes from the receiver's log: every request is in it, refused ones too.
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
    issues = wh.postback_issues
    return data_dir, issues, wh


@app.cell
def _(issues):
    mo.stop(issues.is_empty(), mo.callout("No postback issues: every postback recorded a conversion.",
                                          kind="success"))
    by_reason = (issues.with_columns(pl.coalesce("partner_id", "key_partner_id").fill_null("(unknown)")
                                     .alias("partner"))
                 .group_by("reason", "partner").agg(pl.len().alias("issues"))
                 .sort(["issues", "reason", "partner"], descending=[True, False, False]))
    over_time = (issues.group_by(pl.col("received_at").dt.date().alias("day"), "reason")
                 .agg(pl.len().alias("issues")).sort("day", "reason"))
    chart = alt.Chart(over_time).mark_bar().encode(
        x=alt.X("yearmonthdate(day):T", title="day (UTC)", axis=alt.Axis(format="%b %d")), y=alt.Y("issues:Q"), color="reason:N",
        tooltip=["day:T", "reason:N", "issues:Q"],
    ).properties(width=760, height=240, title="Postback issues per day, by reason")
    mo.vstack([mo.md("## Issues by reason and partner"), mo.ui.altair_chart(chart),
               mo.ui.table(by_reason, label="Issues per reason and partner", page_size=10)])
    return


@app.cell
def _(issues):
    guide = fix_guide()
    seen = issues.group_by("reason").agg(pl.len().alias("issues"))
    table = seen.join(guide, on="reason", how="left").sort("issues", descending=True)
    mo.vstack([mo.md("## What to tell the partner"),
               mo.ui.table(table.select("reason", "issues", "symptom", "likely_cause", "fix"),
                           selection=None, page_size=12)])
    return


@app.cell
def _(issues):
    nearest = issues.filter(pl.col("nearest_click_id").is_not_null()).select(
        "received_at", "partner_id", "route", "click_id", "nearest_click_id", "reason")
    wrong_path = issues.filter(pl.col("reason") == "wrong_path").select(
        "received_at", "method", "path", "click_id", "detail")
    mo.vstack([
        mo.md("## Unknown click ids with a likely match"),
        mo.ui.table(nearest, page_size=8) if nearest.height
        else mo.md("_No unknown click id is close to a known one._"),
        mo.md("## Postbacks sent to a wrong URL (they carried a click id)"),
        mo.ui.table(wrong_path, page_size=8) if wrong_path.height
        else mo.md("_None: every request carrying a click id went to a postback route._"),
    ])
    return


@app.cell
def _(wh):
    partners = sorted(p for p in wh.clicks["partner_id"].unique().to_list() if p)
    affiliates = sorted(a for a in wh.clicks["affiliate_id"].unique().to_list() if a)
    search = mo.ui.text(label="Click id or transaction id (or part of one)", full_width=True)
    partner = mo.ui.dropdown(["(any)", *partners], value="(any)", label="Partner")
    affiliate = mo.ui.dropdown(["(any)", *affiliates], value="(any)", label="Affiliate")
    mo.vstack([mo.md("## The story of one click"), search, mo.hstack([partner, affiliate])])
    return affiliate, partner, search


@app.cell
def _(affiliate, issues, partner, search, wh):
    filtered = bool(search.value.strip()) or partner.value != "(any)" or affiliate.value != "(any)"
    if filtered:
        found = find_clicks(wh, text=search.value, partner=None if partner.value == "(any)" else partner.value,
                            affiliate=None if affiliate.value == "(any)" else affiliate.value)
    else:  # start where support usually does: the latest click id a partner complained about
        latest = issues.filter(pl.col("nearest_click_id").is_not_null()).sort("seq").tail(1)
        found = find_clicks(wh, text=(latest["nearest_click_id"][0] if latest.height else ""), limit=1)
    mo.stop(found.is_empty(), mo.callout("No click, conversion or postback matches.", kind="warn"))
    picker = mo.ui.table(found, selection="single", label="Matches: pick one", page_size=8, initial_selection=[0])
    picker
    return (picker,)


@app.cell
def _(data_dir, picker, wh):
    chosen = picker.value["click_id"][0] if picker.value.height else None
    mo.stop(chosen is None, mo.md("_Pick a click above._"))
    story = click_story(wh, chosen, data_dir)
    requests_shown = story.requests.select(
        "seq", "received_at", "kind", "method", "route", "http_status", "result", "error", "transaction_id",
        "status_raw", "query", "body", "remote_addr", "user_agent", "custom_data")
    mo.vstack([
        mo.md(f"### `{chosen}`"),
        mo.md("**The click**") if story.click.height else mo.callout(
            "We never issued this click id: see the issues below for what the partner sent.", kind="warn"),
        mo.ui.table(story.click.select("clicked_at", "source", "slug", "product_id", "offer_id", "partner_id",
                                       "affiliate_id", "user_id", "ip", "user_agent", "referer", "expires_at",
                                       "custom_data"), selection=None) if story.click.height else mo.md(""),
        mo.md("**Every request about it, with the answer we gave** (raw query and body as received)"),
        mo.ui.table(requests_shown, selection=None, page_size=10),
        mo.md("**The conversion it produced**"),
        mo.ui.table(display_money(story.conversions.select(
            "transaction_id", "converted_at", "status", "status_history", "counts", "not_counted_reason",
            "amount", "currency", "amount_base", "affiliate_payout_base", "duplicates")), selection=None)
        if story.conversions.height else mo.md("_No conversion._"),
        mo.md("**Its postback issues**"),
        mo.ui.table(story.issues.select("received_at", "route", "error", "reason", "detail"), selection=None)
        if story.issues.height else mo.md("_None._"),
    ])
    return (story,)


if __name__ == "__main__":
    app.run()
