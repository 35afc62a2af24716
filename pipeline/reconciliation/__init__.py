"""Reconciliation: a partner's statement against our conversions, one row per (click_id, transaction_id).

    result = reconcile("data/demo", partner="acme", statement="acme-may.csv")
    print(result.describe()); result.to_csv("acme-may-reconciled.csv")

The parts, one job each:
- statement: reading a statement (headings mapped or guessed, cells checked);
- compare: reconcile, the comparison and its totals (the rules are in its docstring);
- result: ReconcileResult and the text describe() gives;
- missing: why a statement row is not among our conversions (explain_missing_ours);
- views: the totals per day and per status, and the rows without an fx rate, for the notebook;
- export: the one rule for spreadsheet-safe cells, and the CSV written with it;
- sample: a SAMPLE statement with every outcome, for demos;
- outcomes: the row key and the outcomes, in their order.
"""

from pipeline.reconciliation.compare import DATE_BASES, LATEST, reconcile
from pipeline.reconciliation.export import (
    FORMULA_START,
    csv_safe_bytes,
    safe_cell,
    safe_text,
    spreadsheet_safe,
    write_csv_safe,
)
from pipeline.reconciliation.missing import (
    MISSING_OURS_REASONS,
    NEVER_RECEIVED,
    explain_missing_ours,
)
from pipeline.reconciliation.outcomes import KEY, OUTCOMES
from pipeline.reconciliation.result import ROWS_SHOWN, ReconcileResult
from pipeline.reconciliation.sample import sample_statement
from pipeline.reconciliation.statement import (
    COLUMN_ALIASES,
    DEFAULT_COLUMNS,
    REQUIRED,
    guess_columns,
    read_statement,
    read_statement_csv,
    statement_columns,
)
from pipeline.reconciliation.views import daily_totals, totals_by_status, without_fx_rate

__all__ = [
    "COLUMN_ALIASES",
    "DATE_BASES",
    "DEFAULT_COLUMNS",
    "FORMULA_START",
    "KEY",
    "LATEST",
    "MISSING_OURS_REASONS",
    "NEVER_RECEIVED",
    "OUTCOMES",
    "REQUIRED",
    "ROWS_SHOWN",
    "ReconcileResult",
    "csv_safe_bytes",
    "daily_totals",
    "explain_missing_ours",
    "guess_columns",
    "read_statement",
    "read_statement_csv",
    "reconcile",
    "safe_cell",
    "safe_text",
    "sample_statement",
    "spreadsheet_safe",
    "statement_columns",
    "totals_by_status",
    "without_fx_rate",
    "write_csv_safe",
]
