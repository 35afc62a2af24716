"""Domain exceptions of the pipeline: each carries the facts a person needs to act.

The API never prints or exits; it raises one of these. The CLI turns them into a
message and a non-zero exit code. Every message says what is wrong, where, and
what to do about it, in words a finance or support person can follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class PipelineConfigError(PipelineError):
    """DATA/config.toml is missing or invalid (the receiver's ConfigError, re-raised)."""


class CorruptLogError(PipelineError):
    """A line in the middle of a log segment fails its checksum: the log was damaged after it was written."""

    def __init__(self, segment: Path, line_no: int, excerpt: bytes):
        self.segment = Path(segment)
        self.line_no = line_no
        self.excerpt = excerpt
        super().__init__(
            f"{self.segment.name} line {line_no} is corrupt (its crc32 does not match): "
            f"{excerpt[:80]!r}. The log is damaged; restore the segment from a backup, or run "
            "`clickledger run --skip-corrupt` to skip such lines (they are then listed in the summary)."
        )


@dataclass(frozen=True)
class InconsistentEvent:
    """One log record involved in a consistency failure."""

    seq: int | None
    event_id: str | None
    click_id: str | None
    transaction_id: str | None
    result: str | None
    problem: str
    segment: str | None = None
    line_no: int | None = None

    def describe(self) -> str:
        where = f" ({self.segment} line {self.line_no})" if self.segment else ""
        return (f"seq {self.seq} event {self.event_id}{where}: {self.result} for "
                f"click_id={self.click_id!r} transaction_id={self.transaction_id!r}: {self.problem}")


class PipelineConsistencyError(PipelineError):
    """The receiver's answers and the derived conversions disagree; nothing was written."""

    def __init__(self, events: list[InconsistentEvent]):
        self.events = events
        shown = "\n  ".join(e.describe() for e in events[:20])
        more = f"\n  ... and {len(events) - 20} more" if len(events) > 20 else ""
        super().__init__(
            f"the log's answers and the derived conversions disagree on {len(events)} event(s); "
            f"no table was written:\n  {shown}{more}\n"
            "Each `recorded` answer must be exactly one conversion and each `duplicate` must follow the "
            "`recorded` record of its (click_id, transaction_id). Check for a restored or edited segment."
        )


class FxRatesError(PipelineError):
    """DATA/fx_rates.csv cannot be used (missing columns, bad dates or rates, duplicate rows)."""


class SchemaValidationError(PipelineError):
    """A table does not match its pandera schema; carries the failure cases."""

    def __init__(self, table: str, message: str, failure_cases: Any = None):
        self.table = table
        self.failure_cases = failure_cases
        super().__init__(message)


class WarehouseNotFoundError(PipelineError):
    """The warehouse tables do not exist yet."""


class LedgerError(PipelineError):
    """The wallet ledger cannot be read or appended safely."""


class StatementError(PipelineError):
    """A partner statement cannot be reconciled as given (missing columns, bad amounts, duplicate keys)."""


class UnknownPartnerError(PipelineError):
    """A partner id that is neither in the config nor in the conversions."""


__all__ = [
    "CorruptLogError",
    "FxRatesError",
    "InconsistentEvent",
    "LedgerError",
    "PipelineConfigError",
    "PipelineConsistencyError",
    "PipelineError",
    "SchemaValidationError",
    "StatementError",
    "UnknownPartnerError",
    "WarehouseNotFoundError",
]
