"""A reconciliation row's key and its outcomes, in the order they are decided."""

from __future__ import annotations

import polars as pl

OUTCOMES = ("matched", "missing_ours", "missing_theirs", "amount_mismatch", "status_mismatch",
            "currency_mismatch")
KEY = ["click_id", "transaction_id"]


def outcome_rank() -> pl.Expr:
    """An outcome's place in OUTCOMES: sort by it to list outcomes in their order."""
    return pl.col("outcome").replace_strict({o: i for i, o in enumerate(OUTCOMES)}, return_dtype=pl.Int64)
