"""DuckDB connections of the pipeline: bounded memory, spilling to disk under the data directory.

Every DuckDB the pipeline opens for set work (staging a segment, routing rows to their click
day) gets a `memory_limit` and a `temp_directory` (DATA/warehouse/tmp/), so an operator that
would not fit (a join or sort over the whole history) spills to disk instead of growing the
process: the run's peak memory does not depend on how long the log is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Per connection. Staging runs two connections at once (STAGING_THREADS) on ~64 MiB segments;
# routing runs one at a time over the whole history and spills past its limit (at 1M events a
# limit of 1.5 GB was the run's whole peak, 1.5 GB; at 512 MB the peak is 0.7 GB and the run as fast).
STAGING_MEMORY_LIMIT = "512MB"
ROUTING_MEMORY_LIMIT = "512MB"


def connect(tmp_dir: Path | None, *, memory_limit: str, threads: int = 1, keep_order: bool = True) -> Any:
    """An in-memory DuckDB with this memory limit, spilling to `tmp_dir` (made when missing).
    `keep_order=False` lets it reorder rows (less memory in large copies) where nothing
    depends on their order."""
    import duckdb

    config: dict[str, Any] = {"threads": threads, "memory_limit": memory_limit,
                              "preserve_insertion_order": keep_order}
    if tmp_dir is not None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        config["temp_directory"] = str(tmp_dir)
    con = duckdb.connect(config=config)
    con.execute("SET TimeZone = 'UTC'")  # a timestamp's day is its UTC day, as in Polars
    return con
