"""The offline log generator (`clickledger simulate --offline`) and the fast staging path it feeds."""

from __future__ import annotations

import random
import shutil
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import polars as pl
import pytest

import pipeline
from clickledger.cli import main as cli_main
from clickledger.demo import write_demo_config, write_fx_rates
from clickledger.simulator.history import simulate_history
from clickledger.simulator.offline import DAYS, generate_log
from pipeline.nearest import NearestClickIndex, index_for
from pipeline.staging import stage_segment, stage_segment_python
from receiver.contract import framing
from receiver.contract.framing import check_line, read_segment, segment_paths

EVENTS = 4000
END = date(2025, 6, 30)  # generated logs end today by default: pinned, so output is the same every day


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("offline") / "data"
    summary = generate_log(out, EVENTS, seed=5, segment_bytes=1_500_000, end=END)
    assert summary.events == EVENTS and len(summary.segments) > 1
    return out


def _lines(data: Path) -> list[bytes]:
    return [line for path in segment_paths(data / "log") for line in read_segment(path).splitlines(keepends=True)]


def test_every_line_is_intact_and_seq_strictly_increases(generated):
    lines = _lines(generated)
    assert len(lines) == EVENTS
    records = [check_line(line) for line in lines]
    assert all(r is not None for r in records)
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(1, EVENTS + 1))
    kinds = {(r["kind"], r["result"] or r["error"]) for r in records}
    for expected in [("click", "click"), ("postback", "recorded"), ("postback", "duplicate"),
                     ("postback", "click_not_found"), ("postback", "invalid_api_key"), ("unrouted", "not_found")]:
        assert expected in kinds
    dialects = {r["fields"].get("dialect") for r in records if r["kind"] == "postback"}
    assert dialects == {"network", "publisher", "peerclick", "advertiser", "earn"}
    clicks = sum(1 for r in records if r["kind"] == "click" and r["result"] == "click")
    assert 0.5 < clicks / EVENTS < 0.65
    assert any(r["custom_data"] for r in records)


def test_same_seed_same_bytes_other_seed_other_bytes(generated, tmp_path):
    generate_log(tmp_path / "again", EVENTS, seed=5, segment_bytes=1_500_000, end=END)
    generate_log(tmp_path / "other", EVENTS, seed=6, segment_bytes=1_500_000, end=END)
    assert _lines(tmp_path / "again") == _lines(generated)
    assert (tmp_path / "again" / "fx_rates.csv").read_bytes() == (generated / "fx_rates.csv").read_bytes()
    assert _lines(tmp_path / "other") != _lines(generated)


def test_the_pipeline_derives_valid_tables_with_conversions_and_issues(generated, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(generated, data)
    assert cli_main(["run", "--data", str(data)]) == 0  # run validates every table with pandera
    wh = pipeline.load(data)
    conv = wh.conversions
    assert conv.height > 300
    assert conv.filter(pl.col("counts")).height > 100
    assert set(conv["status"].unique()) >= {"approved", "pending", "rejected"}
    assert conv["duplicates"].sum() > 0
    reasons = set(wh.postback_issues["reason"].unique())
    assert {"duplicate", "unknown_click_id", "wrong_api_key", "wrong_path", "test_postback"} <= reasons
    assert wh.postback_issues["nearest_click_id"].drop_nulls().len() > 0  # typos still find their click
    assert cli_main(["credit", "--data", str(data)]) == 0
    assert pipeline.load(data).wallet_credits.height > 0


def _shapes(records) -> dict[tuple[str, str], set[tuple[str, ...]]]:
    out: dict[tuple[str, str], set[tuple[str, ...]]] = defaultdict(set)
    for r in records:
        out[(r["kind"], r["result"] or r["error"])].add(tuple(sorted(r["fields"])))
        out[("record", "")].add(tuple(sorted(r)))
    return out


def test_records_have_the_shape_the_real_receiver_writes(generated, tmp_path):
    live = tmp_path / "live"
    write_demo_config(live)
    write_fx_rates(live)
    simulate_history(live, days=1, clicks_per_day=150, seed=9, end=datetime(2025, 5, 6, tzinfo=UTC))
    real = _shapes(orjson.loads(line) for line in _lines(live))
    ours = _shapes(check_line(line) for line in _lines(generated))
    common = set(real) & set(ours)
    assert {("click", "click"), ("postback", "recorded"), ("postback", "duplicate"), ("record", "")} <= common
    for key in common:
        assert ours[key] == real[key], key


def test_append_continues_seq_in_a_new_segment(tmp_path):
    data = tmp_path / "data"
    first = generate_log(data, 600, seed=2)
    more = generate_log(data, 100, seed=2, append=True)
    assert more.first_seq == first.last_seq + 1 and more.segments[0] != first.segments[-1]
    assert more.first_day > first.last_day
    records = [check_line(line) for line in _lines(data)]
    assert [r["seq"] for r in records] == list(range(1, 701))
    ids = [r["event_id"] for r in records]
    assert len(set(ids)) == len(ids)
    with pytest.raises(FileExistsError):
        generate_log(data, 10, seed=2)


def test_incremental_run_after_append_equals_a_full_run(tmp_path):
    data = tmp_path / "data"
    generate_log(data, 1500, seed=3)
    pipeline.run(data)
    generate_log(data, 150, seed=3, append=True)
    incremental = pipeline.run(data)
    assert incremental.cached_segments == 1
    full = tmp_path / "full"
    shutil.copytree(data, full, ignore=shutil.ignore_patterns("warehouse"))
    pipeline.run(full)
    for name, frame in pipeline.load(data).tables.items():
        assert frame.equals(pipeline.load(full).tables[name]), name


def test_fast_staging_equals_the_record_by_record_reference(generated, tmp_path):
    for path in segment_paths(generated / "log"):
        assert stage_segment(path, lambda bad: None).equals(stage_segment_python(path, lambda bad: None))
    # bad lines: a corrupt one, blank ones, a torn last one: same rows and the same reports
    lines = read_segment(segment_paths(generated / "log")[0]).split(b"\n")
    lines[3] = lines[3].replace(b'"kind":"', b'"kind":"x', 1)
    lines[5], lines[7] = b"", b"   "
    broken = tmp_path / "segment-00000001.ndjson"
    broken.write_bytes(b"\n".join(lines[:50]) + b"\n" + lines[50][:40])
    fast_bad, ref_bad = [], []
    fast = stage_segment(broken, fast_bad.append)
    assert fast.equals(stage_segment_python(broken, ref_bad.append))
    assert fast_bad == ref_bad and [b.line_no for b in fast_bad] == [4, 51] and fast_bad[1].torn


def test_nearest_index_over_reachable_clicks_answers_as_the_full_index():
    rng = random.Random(11)
    clicks = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(5000)]
    clicks += [c.upper() for c in clicks[:20]] + ["short", "abcdefgh12"]
    sent = ["", "  ", "abcdefgh", "abc"]
    for c in clicks[:400]:
        roll, pos = rng.random(), rng.randrange(36)
        sent.append(c[:rng.randrange(5, 36)] if roll < 0.3 else
                    c[:pos] + rng.choice("0123456789abcdefg") + c[pos + 1:] if roll < 0.5 else
                    c[rng.randrange(1, 20):] if roll < 0.6 else
                    f'"{c}"' if roll < 0.7 else
                    c[:pos] + c[pos + 2:] if roll < 0.8 else c.upper()[:-1] + "zz")
    full, reachable = NearestClickIndex(clicks), index_for(pl.Series(clicks), sent)
    assert len(reachable.forward) < len(full.forward) / 2
    answers = [full.find(s) for s in sent]
    assert sum(a is not None for a in answers) > 200
    assert [reachable.find(s) for s in sent] == answers


# ---------------------------------------------------------------- issue 13: days, compression


def _days(data: Path) -> list[date]:
    return [date.fromisoformat(r["received_at"][:10]) for r in framing_records(data)]


def framing_records(data: Path) -> list[dict]:
    return [check_line(line) for line in _lines(data)]


def test_a_new_log_spreads_over_the_days_ending_on_its_end(tmp_path):
    summary = generate_log(tmp_path / "a", 20_000, seed=4, end=END, days=30)
    days = _days(tmp_path / "a")
    assert min(days) == summary.first_day == date(2025, 6, 1) and max(days) == summary.last_day == END
    assert len(set(days)) == 30  # every day of the window has traffic
    assert days == sorted(days)  # later seqs, later (or the same) days
    per_day = Counter(days).values()
    assert max(per_day) < 2 * min(per_day)  # evenly
    # the default window: DAYS days ending today (UTC)
    default = generate_log(tmp_path / "b", 2_000, seed=4)
    today = datetime.now(UTC).date()
    assert default.last_day in (today, today - timedelta(days=1))  # (a run across midnight)
    assert default.first_day >= default.last_day - timedelta(days=DAYS - 1)
    # another end moves the dates, nothing else
    generate_log(tmp_path / "c", 20_000, seed=4, end=END + timedelta(days=3), days=30)
    assert _days(tmp_path / "c") == [d + timedelta(days=3) for d in days]
    with pytest.raises(ValueError, match="days must be at least 1"):
        generate_log(tmp_path / "d", 10, days=0)


def test_an_appended_part_goes_on_the_next_day(tmp_path):
    data = tmp_path / "data"
    first = generate_log(data, 600, seed=2, end=END)
    more = generate_log(data, 100, seed=2, append=True)
    assert first.last_day == END and more.first_day == more.last_day == END + timedelta(days=1)
    with pytest.raises(ValueError, match="give days, not end"):
        generate_log(data, 10, seed=2, append=True, end=END)


def test_segments_are_compressed_as_the_receiver_seals_them_unless_asked_not_to(generated, tmp_path):
    assert all(framing.is_compressed(p) for p in segment_paths(generated / "log"))
    plain = generate_log(tmp_path / "plain", EVENTS, seed=5, segment_bytes=1_500_000, end=END, compress=False)
    assert not any(framing.is_compressed(p) for p in plain.segments) and plain.compressed_bytes == 0
    assert _lines(tmp_path / "plain") == _lines(generated)  # the same lines in either form


def test_a_generated_64_mib_segment_takes_at_most_250_bytes_per_event_on_disk(tmp_path):
    summary = generate_log(tmp_path / "big", 70_000, seed=1, end=END)
    first = summary.segments[0]
    lines = framing.read_segment(first)
    assert framing.is_compressed(first) and len(lines) >= 64 * 2**20  # a full, sealed segment
    per_event = first.stat().st_size / lines.count(b"\n")
    assert per_event <= 250, per_event
    assert summary.compressed_bytes / summary.events <= 250
