"""The story of one click, for support: everything the log holds about it, in order.

The warehouse tables hold what was derived; the raw requests (query string, body, the
answer we gave, track events, postbacks sent to a wrong path) stay in the log, which
DuckDB reads directly, plain and compressed segments alike. Torn or corrupt lines are skipped here (this is a look-up, not
a money table; `clickledger run` reports them).

What support sees goes through `for_support`, which puts each api key's fingerprint in its
place (pipeline.secrets, as staging does for every table); `click_story` itself returns the
log as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl

from pipeline.partitions import segments_holding
from pipeline.secrets import mask_secrets
from pipeline.staging import duckdb_columns
from pipeline.warehouse import Warehouse
from receiver.contract.datadir import DataDir
from receiver.contract.framing import segment_name_of, segment_paths

# The log members a support person reads, typed for DuckDB's read_json by the contract.
LOG_COLUMNS = duckdb_columns(("seq", "received_at", "kind", "route", "method", "path", "query", "body",
                              "body_encoding", "remote_addr", "user_agent", "http_status", "result", "error",
                              "fields", "custom_data"))


# The raw members a support person reads that may carry a key (pipeline.secrets masks them).
MASK_COLUMNS = ("path", "query", "body", "custom_data", "referer")


def for_support(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with mask_secrets applied to the raw columns it has (MASK_COLUMNS), as text (a
    record's `path` is percent-decoded already)."""
    return frame.with_columns(
        pl.col(c).cast(pl.String).map_elements(partial(mask_secrets, path_decoded=c == "path"),
                                               return_dtype=pl.String)
        for c in MASK_COLUMNS if c in frame.columns)


def log_requests(data_dir: str | Path, *, click_id: str | None = None,
                 transaction_id: str | None = None, limit: int = 500) -> pl.DataFrame:
    """Raw log records whose parsed click id (or transaction id) is the one given, in log order."""
    import duckdb

    if click_id is None and transaction_id is None:
        raise ValueError("give a click_id or a transaction_id to look up")
    data = DataDir(data_dir)
    if not segment_paths(data.log_dir):
        return pl.DataFrame(schema={c: pl.String for c in LOG_COLUMNS})
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in LOG_COLUMNS.items())
    where, params = [], []
    if click_id is not None:
        where.append("json_extract_string(fields, '$.click_id') = ?")
        params.append(click_id)
    if transaction_id is not None:
        where.append("json_extract_string(fields, '$.transaction_id') = ?")
        params.append(transaction_id)
    query = (f"select * exclude (fields, custom_data), json_extract_string(fields, '$.transaction_id') "
             f"as transaction_id, json_extract_string(fields, '$.status_raw') as status_raw, "
             f"cast(custom_data as varchar) as custom_data "
             f"from read_json(?, format='newline_delimited', columns={{{columns}}}, ignore_errors=true) "
             f"where {' and '.join(where)} order by seq limit {int(limit)}")
    # only the segments the routed rows say hold this id (and those not routed yet): reading every
    # segment of a long log for one click took 9 s at 1M events
    holding = segments_holding(data, click_id=click_id, transaction_id=transaction_id)
    with duckdb.connect() as con:
        for attempt in range(2):
            # each segment's current form (plain or .zst: DuckDB decompresses it), never a glob,
            # which would read a segment twice while it is being compressed
            files = [str(path) for path in segment_paths(data.log_dir)
                     if holding is None or segment_name_of(path) in holding]
            if not files:
                return pl.DataFrame(schema={c: pl.String for c in LOG_COLUMNS})
            try:
                cursor = con.execute(query, [files, *params])
                break
            except duckdb.IOException:
                if attempt:  # a plain segment compressed after it was listed is listed again once
                    raise
        names = [d[0] for d in cursor.description]
        return pl.DataFrame(cursor.fetchall(), schema=names, orient="row", infer_schema_length=None)


@dataclass
class ClickStory:
    """The click (0 or 1 row), every request about it in log order, the conversions it produced,
    and what we told the publisher about them: `deliveries` (one row per conversion, event and
    endpoint, in the order they were planned) and each of their `attempts`, URLs masked."""

    click_id: str
    click: pl.DataFrame
    requests: pl.DataFrame
    conversions: pl.DataFrame
    issues: pl.DataFrame
    deliveries: pl.DataFrame | None = None
    attempts: pl.DataFrame | None = None

    @property
    def found(self) -> bool:
        return self.click.height > 0 or self.requests.height > 0


def click_story(wh: Warehouse, click_id: str, data_dir: str | Path | None = None) -> ClickStory:
    """Everything about one click: from the warehouse, and the raw requests from the log."""
    data_dir = Path(data_dir) if data_dir is not None else (wh.directory.parent if wh.directory else None)
    if data_dir is None:
        raise ValueError("this warehouse was not loaded from a data directory: pass data_dir")
    return ClickStory(
        click_id,
        wh.scan("clicks").filter(pl.col("click_id") == click_id).collect(),
        log_requests(data_dir, click_id=click_id),
        wh.scan("conversions").filter(pl.col("click_id") == click_id).collect(),
        wh.scan("postback_issues").filter(pl.col("click_id") == click_id).collect(),
        _table(wh, "deliveries").filter(pl.col("click_id") == click_id).sort("step_seq", "planned_at"),
        _table(wh, "delivery_attempts").filter(pl.col("click_id") == click_id).sort("started_at", "attempt"),
    )


def _table(wh: Warehouse, name: str) -> pl.DataFrame:
    """A warehouse table, or its empty frame for a warehouse made before it existed."""
    from pipeline.schemas import empty

    frame = wh.tables.get(name)
    return frame if frame is not None else empty(name)


def find_clicks(wh: Warehouse, *, text: str = "", partner: str | None = None,
                affiliate: str | None = None, limit: int = 200) -> pl.DataFrame:
    """Click ids matching a search: a click or transaction id (or part of one), a partner, an
    affiliate; from clicks, conversions and postback issues alike (an unknown id is findable too)."""
    seen = pl.concat([
        wh.scan("clicks").select("click_id", pl.lit(None, pl.String).alias("transaction_id"), "partner_id",
                                 "affiliate_id", pl.col("clicked_at").alias("at"), pl.lit("click").alias("source")),
        wh.scan("conversions").select("click_id", "transaction_id", "partner_id", "affiliate_id",
                                      pl.col("converted_at").alias("at"), pl.lit("conversion").alias("source")),
        wh.scan("postback_issues").filter(pl.col("click_id").is_not_null()).select(
            "click_id", "transaction_id", pl.coalesce("partner_id", "key_partner_id").alias("partner_id"),
            pl.lit(None, pl.String).alias("affiliate_id"), pl.col("received_at").alias("at"),
            pl.col("reason").alias("source")),
    ])
    if text.strip():
        needle = text.strip()
        seen = seen.filter(pl.col("click_id").str.contains(needle, literal=True)
                           | pl.col("transaction_id").fill_null("").str.contains(needle, literal=True))
    if partner:
        seen = seen.filter(pl.col("partner_id") == partner)
    if affiliate:
        seen = seen.filter(pl.col("affiliate_id") == affiliate)
    return (seen.group_by("click_id").agg(
        pl.col("partner_id").drop_nulls().first(), pl.col("affiliate_id").drop_nulls().first(),
        pl.col("transaction_id").drop_nulls().unique().sort().str.join(", ").alias("transaction_ids"),
        pl.col("source").unique().sort().str.join(", ").alias("seen_as"), pl.col("at").max().alias("last_seen"))
        .sort(["last_seen", "click_id"], descending=[True, False]).head(limit).collect(engine="streaming"))
