"""Staging: every log record becomes one typed row, one segment at a time.

This is the only layer of the pipeline that reads the log's JSON, and it knows its shape
only from the contract (receiver.contract.record, docs/log-format.md): one column per
record member (but those in NOT_STAGED) and per `fields` key of any kind, named as the
contract names them, typed by the contract's types: UTC times (`received_at`,
`expires_at`) to `Datetime("us", "UTC")`, decimal strings (amounts, revenue shares) to
`Decimal(38, 8)` (exact; the receiver never writes more than 8 places), and `custom_data`
to JSON text with sorted keys (its values are whatever partners sent, so it has no fixed
struct type).

Each closed segment's staged rows are cached as Parquet under
DATA/warehouse/staging/, keyed by segment name, size and mtime (and the staging
version), so a later run restages only new or grown segments. Staging is a pure
function of a segment's bytes, so a cached run equals a full run. A segment with a
bad line is never cached, so its warning is repeated on every run.

A sealed segment is compressed (segment-NNNNNNNN.ndjson.zst, receiver.contract.framing):
its bytes are decompressed in memory for the CRC check and DuckDB reads the .zst itself.
The cache key is the same in both forms (the segment's name, the size of its lines and
the mtime, which compression keeps), so a segment compressed after it was staged is not
staged again; rows name their segment by that name too, so they do not change either.

Staging is where api keys leave: the raw members it keeps (path, query, referer, custom_data,
an http_error's request line and header lines) hold a key only as its fingerprint
(pipeline.secrets), so the cache and every table derived from it inherit that. The raw body
is read (amount_sent) but never kept.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from pipeline import duck
from pipeline.errors import CorruptLogError
from pipeline.money import MONEY
from pipeline.secrets import mask_column, mask_distinct, mask_headers, mask_json, mask_secrets
from receiver.contract import record as log_record
from receiver.contract.framing import (
    BadLine,
    check_lines,
    compressed_path,
    is_compressed,
    iter_lines,
    load_segment,
    segment_name_of,
    segment_paths,
    segment_stat,
)
from receiver.contract.params import (
    ParamError,
    decode_body,
    merge_params,
    parse_body,
    parse_query,
    split_params,
    vocabulary_for,
)
from receiver.contract.profiles import PROFILE_DIALECT

log = logging.getLogger("clickledger.pipeline")

STAGING_VERSION = 7  # 2: amount_sent; 3: columns from the contract (client_ip, signature_present); 4: profiles;
# 5: issue 12's fields (content_encoding, probe and http_error keys), bodies read as the receiver reads them;
# 6: repeated_params and the unsubstituted macro of a refusal (macro_field, macro_param, macro)
# 7: keys masked by their fingerprint (pipeline.secrets)
STAGING_THREADS = 2  # segments staged at once (this is a 2-core budget)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"
UTC_TS = pl.Datetime("us", "UTC")

# Record members staging leaves out: the line's framing, the format version, the raw body and
# the templated answer (no table reads them; the raw request and answer stay in the log, where
# the click story reads them). `body` and `body_encoding` are still read, to tell whether an
# amount was sent (amount_sent).
NOT_STAGED = ("crc32", "v", "body", "body_encoding", "body_truncated", "answer_body")
RAW_BODY = ("body", "body_encoding")
FIELDS, CUSTOM_DATA = "fields", "custom_data"  # flattened into a column per key; kept as JSON text
_TEXT_TYPES = (log_record.TEXT, log_record.DECIMAL, log_record.UTC_TIME)  # JSON strings: staged as text, then cast
DUCKDB_TYPES = {log_record.TEXT: "VARCHAR", log_record.DECIMAL: "VARCHAR", log_record.UTC_TIME: "VARCHAR",
                log_record.INT: "BIGINT", log_record.BOOL: "BOOLEAN", log_record.OBJECT: "JSON"}

_MEMBERS = log_record.members()
if {name for name, kind in _MEMBERS.items() if kind == log_record.OBJECT} != {FIELDS, CUSTOM_DATA}:
    raise RuntimeError("staging knows how to stage the object members fields and custom_data only")
_STAGED = {name: kind for name, kind in _MEMBERS.items() if name not in NOT_STAGED and kind != log_record.OBJECT}
_FIELD_TYPES = log_record.all_fields()
if set(_FIELD_TYPES.values()) - {*_TEXT_TYPES, log_record.BOOL}:
    raise RuntimeError("staging knows how to stage text and bool fields only")
if _FIELD_TYPES.keys() & _MEMBERS.keys():  # fields are flattened among the members: one namespace
    raise RuntimeError(f"fields keys named like members: {sorted(_FIELD_TYPES.keys() & _MEMBERS.keys())}")

# top-level record members kept as integers / text / booleans
_TOP_INT = tuple(name for name, kind in _STAGED.items() if kind == log_record.INT)
_TOP_TEXT = tuple(name for name, kind in _STAGED.items() if kind in _TEXT_TYPES)
_TOP_BOOL = tuple(name for name, kind in _STAGED.items() if kind == log_record.BOOL)
# members of `fields`, by kind of value
FIELD_TEXT = tuple(name for name, kind in _FIELD_TYPES.items() if kind in _TEXT_TYPES)
FIELD_BOOL = tuple(name for name, kind in _FIELD_TYPES.items() if kind == log_record.BOOL)
_TIME_COLUMNS = tuple(name for name, kind in {**_STAGED, **_FIELD_TYPES}.items() if kind == log_record.UTC_TIME)
_DECIMAL_FIELDS = tuple(name for name, kind in {**_STAGED, **_FIELD_TYPES}.items() if kind == log_record.DECIMAL)

RAW_SCHEMA: dict[str, pl.DataType] = {
    **{name: pl.Int64() for name in _TOP_INT},
    **{name: pl.String() for name in _TOP_TEXT},
    **{name: pl.Boolean() for name in _TOP_BOOL},
    CUSTOM_DATA: pl.String(),
    "segment": pl.String(),
    "line_no": pl.Int64(),
    **{name: pl.String() for name in FIELD_TEXT},
    **{name: pl.Boolean() for name in FIELD_BOOL},
    "amount_sent": pl.Boolean(),
}
STAGED_SCHEMA: dict[str, pl.DataType] = {
    **RAW_SCHEMA,
    **{name: UTC_TS for name in _TIME_COLUMNS},
    **{name: MONEY for name in _DECIMAL_FIELDS},
}


def duckdb_columns(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """{member: DuckDB type} of these record members, for read_json's `columns` (the contract's
    types: a member DuckDB should read as it is)."""
    return {name: DUCKDB_TYPES[_MEMBERS[name]] for name in names}


@dataclass
class StagedLog:
    """All staged rows, and what reading the log found on the way.

    `rows` is lazy (over the per-segment Parquet cache when there is one), so a run reads
    only the rows and columns each table needs: ten million events with every column
    would not fit in memory. `events` collects them all, in seq order.
    """

    rows: pl.LazyFrame
    segments: list[Path] = field(default_factory=list)
    skipped: list[BadLine] = field(default_factory=list)
    cached: int = 0  # segments read from the staging cache
    # per segment (by name, segment-NNNNNNNN.ndjson): its staging cache key (name, size, mtime,
    # version), and its staged rows as a Parquet file (the cache) or, when it was not cached
    # (a bad line, or no cache), as a frame
    keys: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    frames: dict[str, pl.DataFrame] = field(default_factory=dict)

    @functools.cached_property
    def events(self) -> pl.DataFrame:
        return self.rows.collect().sort("seq", maintain_order=True)

    def select(self, columns: list[str], kinds: tuple[str, ...] | None = None) -> pl.DataFrame:
        """These columns of the rows of these kinds (all rows when None), in seq order."""
        rows = self.rows if kinds is None else self.rows.filter(pl.col("kind").is_in(list(kinds)))
        frame = rows.select(columns).collect()
        # segments are read in order and a segment's lines are in seq order: a check is cheaper
        # than a sort, and the flag lets the tables' own sorts by seq skip their work too
        if frame["seq"].is_sorted():
            return frame.with_columns(pl.col("seq").set_sorted())
        return frame.sort("seq", maintain_order=True)

    @property
    def torn(self) -> list[BadLine]:
        return [b for b in self.skipped if b.torn]

    @property
    def corrupt(self) -> list[BadLine]:
        return [b for b in self.skipped if not b.torn]


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def _custom_json(value: Any) -> str | None:
    """custom_data as staged: sorted-key JSON text, every key in it masked."""
    return None if value is None else _json(mask_json(value))


def _row(record: dict[str, Any], segment: str, line_no: int) -> list[Any]:
    """One record as a row in RAW_SCHEMA order (written for speed: it runs once per event)."""
    get = record.get
    fields = get(FIELDS)
    fget = fields.get if isinstance(fields, dict) else {}.get
    row: list[Any] = [_int(get(name)) for name in _TOP_INT]
    for name in _TOP_TEXT:
        value = get(name)
        row.append(value if value is None or value.__class__ is str else _text(value))
    for name in _TOP_BOOL:
        value = get(name)
        row.append(value if value.__class__ is bool else None)
    row.append(_custom_json(get(CUSTOM_DATA)))
    row.append(segment)
    row.append(line_no)
    for name in FIELD_TEXT:
        value = fget(name)
        row.append(value if value is None or value.__class__ is str else _text(value))
    for name in FIELD_BOOL:
        value = fget(name)
        row.append(value if value.__class__ is bool else None)
    row.append(amount_sent(record, fget("amount")) if get("kind") == "postback" else None)
    return row


def _is_zero(amount: str) -> bool:
    """Whether an exact decimal string ("0", "0.00") is zero; junk is not zero (it was sent)."""
    try:
        return Decimal(amount) == 0
    except InvalidOperation:
        return False


def amount_sent(record: dict[str, Any], amount: Any) -> bool | None:
    """Whether the postback carried an amount (or payout) parameter.

    The receiver writes "0" for a missing amount, so a zero amount alone cannot tell
    "not sent" from "sent as 0"; only then is the raw request read again, with the
    receiver's own parameter rules. A conflicting duplicate depends on this: a status
    update that sends no amount does not contradict the recorded one.
    """
    if not isinstance(amount, str):
        return None
    if not _is_zero(amount):
        return True
    return _raw_amount(record) is not None


def _raw_amount(record: dict[str, Any]) -> str | None:
    """The amount parameter of the raw request, or None when it had none (or cannot be read).

    A profile partner's postback names the parameter it read the amount from (amount_param): its
    parameters are the profile's of that time, which the staged log must not depend on.
    """
    fields = record.get(FIELDS)
    fields = fields if isinstance(fields, dict) else {}
    if fields.get("dialect") == PROFILE_DIALECT:
        return fields.get("amount_param")
    body = record.get("body") or ""
    try:
        raw_body = base64.b64decode(body) if record.get("body_encoding") == "base64" else body.encode()
        body_params = parse_body(decode_body(raw_body, fields.get("content_encoding")), record.get("content_type"))
    except (ParamError, ValueError):
        body_params = {}
    params = merge_params(parse_query(record.get("query") or ""), body_params)
    dialect = fields.get("dialect")
    raw, _ = split_params(params, vocabulary_for(dialect))
    return raw["amount"] or None


def stage_rows(rows: list[list[Any]]) -> pl.DataFrame:
    """Typed staged frame from raw row tuples (in RAW_SCHEMA column order)."""
    return stage_rows_frame(pl.DataFrame(rows, schema=RAW_SCHEMA, orient="row"))


def stage_rows_frame(raw: pl.DataFrame) -> pl.DataFrame:
    """Typed staged frame from a RAW_SCHEMA frame (custom_data already masked), keys masked."""
    return raw.with_columns(
        *(pl.col(name).str.to_datetime(TIME_FORMAT, time_unit="us", time_zone="UTC", strict=False)
          for name in _TIME_COLUMNS),
        *(pl.col(name).str.to_decimal(scale=8).cast(MONEY) for name in _DECIMAL_FIELDS),
        mask_column(raw["path"], path_decoded=True),
        mask_column(raw["query"]),
        mask_column(raw["referer"]),
        mask_distinct(raw["request_line"], mask_secrets),
        mask_distinct(raw["headers"], mask_headers),
    ).select(list(STAGED_SCHEMA))


def stage_segment(path: Path, on_bad: Callable[[BadLine], None]) -> pl.DataFrame:
    """One segment's staged rows; bad lines go to `on_bad` (which may raise).

    Lines are checked here (crc32 per line: ~1 us each), then DuckDB parses the intact
    ones (~20x faster than a Python loop over records). A segment DuckDB cannot read with
    the log's column types (a record the receiver would never write) is staged by
    `stage_segment_python`, the reference this fast path must equal.
    """
    frame, bad = _stage_checked(path)
    for item in bad:
        on_bad(item)
    return frame


def _stage_checked(path: Path, tmp_dir: Path | None = None) -> tuple[pl.DataFrame, list[BadLine]]:
    """(staged rows, bad lines) of one segment (either form); safe to run in a thread (reports nothing)."""
    data, damage = load_segment(path)
    line_nos, bad = check_lines(path, data)
    if damage is not None:
        bad.append(damage)
    try:
        # DuckDB parses the bytes checked here (already decompressed: reading the .zst again
        # cost a second decompression, ~2 us an event), so what is staged is what was checked
        frame = stage_lines_duckdb(path, data if not bad else _good_bytes(data, line_nos), tmp_dir)
    except Exception as exc:  # noqa: BLE001  (duckdb raises several kinds for unexpected input)
        log.debug("DuckDB could not stage %s (%s): staging it record by record", path.name, exc)
        return stage_segment_python(path, lambda item: None), bad
    if frame.height != len(line_nos):  # never guess line numbers
        return stage_segment_python(path, lambda item: None), bad
    return frame.with_columns(pl.Series("line_no", line_nos, dtype=pl.Int64)), bad


def stage_segment_python(path: Path, on_bad: Callable[[BadLine], None]) -> pl.DataFrame:
    """One segment's staged rows, record by record in Python (the reference implementation)."""
    rows = []
    for line_no, item in iter_lines(path):
        if isinstance(item, BadLine):
            on_bad(item)
        else:
            rows.append(_row(item, segment_name_of(path), line_no))
    return stage_rows(rows)


def _good_bytes(data: bytes, line_nos: list[int]) -> bytes:
    lines = data.split(b"\n")
    return b"".join(lines[n - 1] + b"\n" for n in line_nos)


def _duckdb_columns() -> str:
    """read_json's `columns`: what staging reads of a record, by the contract's types."""
    fields = [f"{name} {DUCKDB_TYPES[kind]}" for name, kind in _FIELD_TYPES.items()]
    columns = {**duckdb_columns((*_TOP_INT, *_TOP_TEXT, *_TOP_BOOL, *RAW_BODY, CUSTOM_DATA)),
               FIELDS: f"STRUCT({', '.join(fields)})"}
    return "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"


def stage_lines_duckdb(path: Path, data: bytes | None = None, tmp_dir: Path | None = None) -> pl.DataFrame:
    """Staged rows (without line_no) of the segment at `path`, or of `data` (its checked lines),
    parsed by DuckDB with fixed column types (no sniffing) and handed to Polars through a
    Parquet file (no pyarrow). Scratch files and DuckDB's spill go to `tmp_dir` (the system's
    temporary directory when None)."""
    import tempfile

    import duckdb

    if tmp_dir is not None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clickledger-stage-", dir=tmp_dir) as tmp:
        target = Path(tmp) / "rows.parquet"
        if data is not None:
            source = Path(tmp) / "lines.ndjson"
            source.write_bytes(data)
            _copy_rows_duckdb(source, target, Path(tmp))
        else:
            try:  # DuckDB decompresses a .zst itself
                _copy_rows_duckdb(path, target, Path(tmp))
            except duckdb.IOException:
                # a plain segment compressed (and removed) since it was listed: its compressed
                # form holds the same bytes (receiver.compression)
                if path.exists() or is_compressed(path):
                    raise
                _copy_rows_duckdb(compressed_path(path), target, Path(tmp))
        raw = pl.read_parquet(target)
    return _finish_raw(raw, segment_name_of(path))


def _copy_rows_duckdb(source: Path, target: Path, tmp_dir: Path | None = None) -> None:
    """The rows staging reads of the NDJSON (or .ndjson.zst) file `source`, into the Parquet file `target`."""
    select = ", ".join([*_TOP_INT, *_TOP_TEXT, *_TOP_BOOL, f"{CUSTOM_DATA}::VARCHAR AS {CUSTOM_DATA}", *RAW_BODY,
                        *(f"{FIELDS}.{name} AS {name}" for name in (*FIELD_TEXT, *FIELD_BOOL))])
    quoted, out = (str(p).replace("'", "''") for p in (source, target))
    # one thread: a single NDJSON file does not parse faster with two, and stage_log
    # already stages two segments at once; a memory limit and a spill directory, as every
    # DuckDB of the pipeline (pipeline.duck)
    con = duck.connect(tmp_dir, memory_limit=duck.STAGING_MEMORY_LIMIT, threads=1)
    try:
        con.execute(f"COPY (SELECT {select} FROM read_json('{quoted}', format='newline_delimited', "
                    f"columns={_duckdb_columns()}, maximum_object_size=16777216)) TO '{out}' "
                    "(FORMAT parquet, COMPRESSION uncompressed)")
    finally:
        con.close()


def _finish_raw(raw: pl.DataFrame, segment: str) -> pl.DataFrame:
    """What _row does per record, column-wise: custom_data as sorted-key JSON, amount_sent."""
    custom = raw["custom_data"]
    texts = custom.drop_nulls().unique().to_list()
    normal = {t: _custom_json(orjson.loads(t)) for t in texts}  # few distinct values: orjson per distinct
    raw = raw.with_columns(
        custom.replace_strict(list(normal), list(normal.values()), default=None, return_dtype=pl.String),
        pl.lit(segment).alias("segment"),
        pl.lit(None, dtype=pl.Int64).alias("line_no"),
        _amount_sent(raw),
    )
    return stage_rows_frame(raw.select(list(RAW_SCHEMA)))


def _amount_sent(raw: pl.DataFrame) -> pl.Series:
    """amount_sent for every row: by the amount text, and for a zero amount by the raw request."""
    amounts = raw["amount"].drop_nulls().unique().to_list()
    zero = {a: _is_zero(a) for a in amounts}
    is_postback = raw["kind"] == "postback"
    zero_col = raw["amount"].replace_strict(list(zero), list(zero.values()), default=None,
                                            return_dtype=pl.Boolean)
    sent = pl.when(is_postback & raw["amount"].is_not_null()).then(~zero_col).otherwise(None)
    out = raw.select(sent.alias("amount_sent"))["amount_sent"]
    ask = raw.with_row_index("_i").filter(is_postback & zero_col.fill_null(False))
    if ask.height:
        values = out.to_list()
        for row in ask.select("_i", "query", "body", "body_encoding", "content_type", "dialect",
                              "content_encoding", "amount_param").iter_rows():
            record = {"query": row[1], "body": row[2], "body_encoding": row[3], "content_type": row[4],
                      "fields": {"dialect": row[5], "content_encoding": row[6], "amount_param": row[7]}}
            values[row[0]] = _raw_amount(record) is not None
        out = pl.Series("amount_sent", values, dtype=pl.Boolean)
    return out


def empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=STAGED_SCHEMA)


def _on_bad(bad: BadLine, *, skip_corrupt: bool, seen: list[BadLine]) -> None:
    if not bad.torn and not skip_corrupt:
        raise CorruptLogError(bad.segment, bad.line_no, bad.excerpt)
    what = "torn last" if bad.torn else "corrupt"
    log.warning("skipping %s line %d of %s: %r", what, bad.line_no, bad.segment.name, bad.excerpt[:60])
    seen.append(bad)


def _cache_stem(path: Path) -> str:
    """`segment-NNNNNNNN`, for the segment's file in either form."""
    return segment_name_of(path).removesuffix(".ndjson")


def _cache_name(path: Path) -> str:
    """The same in both forms of a segment: compressing one does not stage it again."""
    stat = segment_stat(path)
    return f"{_cache_stem(path)}.{stat.size}.{stat.mtime_ns}.v{STAGING_VERSION}.parquet"


def stage_log(
    log_dir: Path,
    *,
    cache_dir: Path | None = None,
    skip_corrupt: bool = False,
    progress: Callable[[int, int, Path], None] | None = None,
    tmp_dir: Path | None = None,
) -> StagedLog:
    """Stage every segment of `log_dir` (cached per segment when `cache_dir` is given).

    A torn last line is skipped with a warning. A corrupt line elsewhere raises
    CorruptLogError naming segment and line, unless `skip_corrupt`; then it is
    skipped and reported in `StagedLog.skipped`. DuckDB's scratch and spill files go to
    `tmp_dir` (DATA/warehouse/tmp/ in a run).
    """
    paths = segment_paths(log_dir)
    staged = StagedLog(empty_events().lazy(), paths)
    frames: list[pl.LazyFrame] = []
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    # Two segments are staged at once: DuckDB and Polars release the GIL, so the crc check
    # of one overlaps the parsing of the other. Results are taken in segment order, so
    # warnings, errors and the cache are as in a one-by-one run.
    with ThreadPoolExecutor(max_workers=STAGING_THREADS, thread_name_prefix="staging") as pool:
        ahead: dict[int, Future[tuple[pl.DataFrame, list[BadLine]]]] = {}
        cache_names = [_cache_name(path) for path in paths] if cache_dir is not None else []
        todo = [(i, path) for i, path in enumerate(paths)
                if cache_dir is None or not (cache_dir / cache_names[i]).exists()]
        queue, staging = iter(todo), {i for i, _ in todo}

        def submit_next() -> None:
            item = next(queue, None)
            if item is not None:
                ahead[item[0]] = pool.submit(_stage_checked, item[1], tmp_dir)

        for _ in range(STAGING_THREADS):
            submit_next()
        for index, path in enumerate(paths, start=1):
            if progress is not None:
                progress(index, len(paths), path)
            cached = cache_dir / cache_names[index - 1] if cache_dir is not None else None
            name = segment_name_of(path)
            staged.keys[name] = cache_names[index - 1] if cache_dir is not None else _cache_name(path)
            if index - 1 not in staging:
                frames.append(pl.scan_parquet(cached))
                staged.files[name] = cached
                staged.cached += 1
                continue
            frame, bad = ahead.pop(index - 1).result()
            submit_next()
            bad_here: list[BadLine] = []
            for item in bad:
                _on_bad(item, skip_corrupt=skip_corrupt, seen=bad_here)
            staged.skipped.extend(bad_here)
            if cached is not None and not bad_here:
                for old in cache_dir.glob(f"{_cache_stem(path)}.*.parquet"):
                    old.unlink(missing_ok=True)
                tmp = cached.with_suffix(".tmp")
                frame.write_parquet(tmp, compression="lz4")  # a cache: fast to write beats small
                os.replace(tmp, cached)
                frames.append(pl.scan_parquet(cached))  # read back per table: frees this segment's memory
                staged.files[name] = cached
            else:
                frames.append(frame.lazy())
                staged.frames[name] = frame
    if cache_dir is not None:  # forget caches of segments that no longer exist
        names = {_cache_stem(p) for p in paths}
        for old in cache_dir.glob("segment-*.parquet"):
            if old.name.split(".")[0] not in names:
                old.unlink(missing_ok=True)
    if frames:
        staged.rows = pl.concat(frames, how="vertical")
    return staged
