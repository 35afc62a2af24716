"""The wallet tables, wallet_credits and wallet_balances, derived from the ledger."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.money import CENTS
from pipeline.schemas import polars_schema
from pipeline.wallet.ledger import ENTRY_FIELDS, ledger_path, read_ledger


def build_wallet_tables(data_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(wallet_credits, wallet_balances) from the ledger, in ledger order."""
    ledger = read_ledger(ledger_path(data_dir))
    credits_schema, balances_schema = polars_schema("wallet_credits"), polars_schema("wallet_balances")
    raw = pl.DataFrame(
        [{**{f: e[f] for f in ENTRY_FIELDS}, "ledger_line": line} for e, line in zip(ledger.entries, ledger.lines,
                                                                                    strict=True)],
        schema={**{f: pl.String for f in ENTRY_FIELDS}, "seq": pl.Int64, "ledger_line": pl.Int64},
    )
    signed = pl.when(pl.col("kind") == "debit").then(-pl.col("amount")).otherwise(pl.col("amount"))
    credits = raw.with_columns(
        pl.col("credited_at").str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC"),
        pl.col("amount").str.to_decimal(scale=2).cast(CENTS),
    ).with_columns(signed.cast(CENTS).alias("signed_amount")).with_columns(
        pl.col("signed_amount").cum_sum().over("user_id", order_by="ledger_line").cast(CENTS)
        .alias("running_balance"))
    credits = credits.select(list(credits_schema)).sort("ledger_line").cast(credits_schema)  # type: ignore[arg-type]
    zero = pl.lit(0, dtype=CENTS)
    balances = credits.group_by("user_id", "currency").agg(
        pl.when(pl.col("kind") == "credit").then(pl.col("amount")).otherwise(zero).sum().cast(CENTS).alias("credited"),
        pl.when(pl.col("kind") == "debit").then(pl.col("amount")).otherwise(zero).sum().cast(CENTS).alias("debited"),
        pl.col("signed_amount").sum().cast(CENTS).alias("balance"),
        pl.len().cast(pl.Int64).alias("entries"),
        pl.col("credited_at").max().alias("last_entry_at"),
    )
    balances = balances.select(list(balances_schema)).sort("user_id", "currency").cast(balances_schema)  # type: ignore[arg-type]
    return credits, balances
