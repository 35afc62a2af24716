"""clickledger's batch pipeline: the money, derived from the receiver's append-only log.

    import pipeline
    summary = pipeline.run("data/demo")        # derive and write DATA/warehouse/
    wh = pipeline.load("data/demo")            # every table as a Polars DataFrame
    wh.conversions, wh.sql("select ...")       # DuckDB SQL over the same tables
    pipeline.credit("data/demo")               # the wallet-credit batch job
    pipeline.reconcile("data/demo", partner="acme", statement="acme.csv")

Nothing here prints or exits; errors are PipelineError subclasses whose messages say
what to do. See docs/pipeline.md for the tables and rules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Exports resolve lazily (PEP 562): `clickledger serve` imports clickledger.pipeline_cli to register
# its subcommands, and must not pay for importing Polars, DuckDB and pandera.
_EXPORTS = {
    "CorruptLogError": "pipeline.errors",
    "FxRatesError": "pipeline.errors",
    "LedgerError": "pipeline.errors",
    "PipelineConfigError": "pipeline.errors",
    "PipelineConsistencyError": "pipeline.errors",
    "PipelineError": "pipeline.errors",
    "SchemaValidationError": "pipeline.errors",
    "StatementError": "pipeline.errors",
    "UnknownPartnerError": "pipeline.errors",
    "WarehouseNotFoundError": "pipeline.errors",
    "ReconcileResult": "pipeline.reconciliation",
    "reconcile": "pipeline.reconciliation",
    "write_csv_safe": "pipeline.reconciliation",
    "RunSummary": "pipeline.runner",
    "credit": "pipeline.runner",
    "derive": "pipeline.runner",
    "run": "pipeline.runner",
    "CreditReport": "pipeline.wallet",
    "Warehouse": "pipeline.warehouse",
    "load": "pipeline.warehouse",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.errors import (  # noqa: F401
        CorruptLogError,
        FxRatesError,
        LedgerError,
        PipelineConfigError,
        PipelineConsistencyError,
        PipelineError,
        SchemaValidationError,
        StatementError,
        UnknownPartnerError,
        WarehouseNotFoundError,
    )
    from pipeline.reconciliation import ReconcileResult, reconcile, write_csv_safe  # noqa: F401
    from pipeline.runner import RunSummary, credit, derive, run  # noqa: F401
    from pipeline.wallet import CreditReport  # noqa: F401
    from pipeline.warehouse import Warehouse, load  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
