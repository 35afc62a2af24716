"""A corrupt log line (a flipped bit anywhere but a torn last line) stops `run` and `credit`,
naming segment and line, unless --skip-corrupt: then it is skipped and listed.

The existing test_pipeline_cli covers one hand-edited amount; these flip one bit at
many places of a three-segment log: the first line, the middle of a segment, the
last (complete) line of a segment that is not the last one, inside JSON strings and
inside the crc32 itself.
"""

from __future__ import annotations

import random

import pytest

import pipeline
from clickledger.cli import main
from pipeline.errors import CorruptLogError
from tests.support.log_builder import LogBuilder, cid, make_data_dir


def three_segments() -> LogBuilder:
    b = LogBuilder()
    for i in range(1, 13):
        b.click(cid(i))
    for i in range(1, 13):
        b.postback(cid(i), amount=f"{i}.5")
    return b  # 24 records: 8 per segment, clicks in segments 1-2, postbacks in 2-3


def flip(path, line_index: int, column: int) -> None:
    """XOR one bit of one byte of a line (never its newline)."""
    lines = path.read_bytes().splitlines(keepends=True)
    line = bytearray(lines[line_index])
    column = min(column, len(line) - 2)
    line[column] ^= 0x04
    lines[line_index] = bytes(line)
    path.write_bytes(b"".join(lines))


CASES = [(0, 0, 3), (1, 3, 40), (1, 7, 100), (0, 7, 10), (2, 4, 200), (1, 0, 12)]  # segment, line, column


@pytest.mark.parametrize(("segment", "line", "column"), CASES)
def test_a_flipped_bit_refuses_run_and_credit_unless_skipped(tmp_path, capsys, segment, line, column):
    data = make_data_dir(tmp_path / "data")
    paths = three_segments().write(data, segments=3)
    flip(paths[segment], line, column)
    name = paths[segment].name
    with pytest.raises(CorruptLogError) as err:
        pipeline.run(data)
    assert (err.value.segment.name, err.value.line_no) == (name, line + 1)
    assert not (data / "warehouse" / "conversions.parquet").exists()  # nothing written
    for command in ("run", "credit"):
        assert main([command, "--data", str(data)]) == 2
        assert f"{name} line {line + 1} is corrupt" in capsys.readouterr().err
    assert main(["run", "--data", str(data), "--skip-corrupt"]) == 0
    out = capsys.readouterr().out
    assert f"skipped      CORRUPT line {line + 1} of {name}" in out
    assert "clickledger run: 23 events read from 3 segment(s)" in out


def test_skip_corrupt_lists_every_bad_line_and_keeps_the_rest(tmp_path):
    rng = random.Random(5)
    data = make_data_dir(tmp_path / "data")
    paths = three_segments().write(data, segments=3, torn_tail=b'{"crc32":"00000000","v":1,"seq":25')
    flip(paths[0], 2, rng.randrange(5, 200))  # a click: its conversion then has click_unknown
    flip(paths[2], 1, rng.randrange(5, 200))
    summary = pipeline.run(data, skip_corrupt=True)
    assert [(s.segment.name, s.line_no, s.torn) for s in summary.skipped] == [
        (paths[0].name, 3, False), (paths[2].name, 2, False), (paths[2].name, 9, True)]
    assert (summary.events, len(summary.corrupt), len(summary.torn)) == (22, 2, 1)
    described = summary.describe()
    assert f"CORRUPT line 3 of {paths[0].name}" in described and f"torn last line 9 of {paths[2].name}" in described
    # a torn last line alone is only a warning, never a refusal
    paths = three_segments().write(data, segments=3, torn_tail=b'{"crc32":"00000000"')
    assert pipeline.run(data).events == 24
