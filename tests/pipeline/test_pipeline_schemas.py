"""pandera schemas of every table: derived tables pass, broken frames fail with a readable message."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import polars as pl
import pytest

import pipeline
from pipeline import schemas
from pipeline.errors import SchemaValidationError
from tests.support.log_builder import LogBuilder, cid, make_data_dir


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    data = make_data_dir(tmp_path_factory.mktemp("schemas") / "data")
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="10", status="pending")
    b.click(cid(2), offer_id="taskwall-tasks", user_id="u1", product_id="task-1", ttl_hours=24)
    b.postback(cid(2), amount="4", dialect="earn")
    b.postback("{click_id}", error="click_not_found")
    b.write(data)
    forward_once(data)
    pipeline.credit(data, now=datetime(2024, 5, 2, tzinfo=UTC))
    return pipeline.load(data).tables


def forward_once(data):
    """Deliveries and attempts (issue 14): aff1's endpoint told of its pending conversion."""
    from pipeline.forwarding.forwarder import Forwarder
    from pipeline.forwarding.sender import SendResult

    class Answers200:
        def send(self, request):
            return SendResult(200)

    with (data / "config.toml").open("a", encoding="utf-8") as config:
        config.write('\n[[affiliates]]\nid = "aff1"\n[[affiliates.postbacks]]\n'
                     'url = "https://pub.example/cb?c={click_id}&token=secret-token-123"\nevents = ["pending"]\n')
    with Forwarder(data, sender=Answers200()) as forwarder:
        assert forwarder.run_once().count("delivered") == 1


@pytest.mark.parametrize("name", sorted(schemas.SCHEMAS))
def test_every_table_matches_its_schema(tables, name):
    assert name in tables
    schemas.validate(name, tables[name])
    assert tables[name].height > 0 or name == "earnings"


@pytest.mark.parametrize("name", sorted(schemas.SCHEMAS))
def test_empty_tables_match_too(name):
    schemas.validate(name, schemas.empty(name))


def test_every_column_has_a_description_and_money_is_decimal():
    for name, model in schemas.SCHEMAS.items():
        schema = model.to_schema()
        for col, column in schema.columns.items():
            dtype = column.dtype.type
            assert not isinstance(dtype, pl.Float32 | pl.Float64), f"{name}.{col} is a float"
            if col in ("amount", "amount_base", "affiliate_payout_base", "commission"):
                assert isinstance(dtype, pl.Decimal), f"{name}.{col}"
            if isinstance(dtype, pl.Datetime):
                assert (dtype.time_unit, dtype.time_zone) == ("us", "UTC"), f"{name}.{col}"


def test_a_broken_frame_fails_with_a_readable_message(tables):
    broken = tables["conversions"].with_columns(
        pl.lit("maybe").alias("status"),
        pl.lit(D("-1"), dtype=pl.Decimal(38, 8)).alias("amount"),
        pl.col("converted_at").dt.replace_time_zone(None),
    ).drop("duplicates")
    with pytest.raises(SchemaValidationError) as err:
        schemas.validate("conversions", broken)
    message = str(err.value)
    assert message.startswith("table conversions does not match its schema:")
    assert "missing column(s): 'duplicates'" in message
    assert "column status: check isin(" in message and "'maybe'" in message
    assert "column amount: check greater_than_or_equal_to(0) failed for 2 row(s), e.g. '-1.00000000'" in message
    assert "column converted_at: has dtype" in message and "expected" in message
    assert err.value.table == "conversions"


def test_duplicate_conversion_keys_are_refused(tables):
    doubled = pl.concat([tables["conversions"], tables["conversions"].head(1)])
    with pytest.raises(SchemaValidationError, match="table conversions"):
        schemas.validate("conversions", doubled)


def test_an_extra_column_is_refused(tables):
    with pytest.raises(SchemaValidationError, match="not in the schema: 'surprise'"):
        schemas.validate("clicks", tables["clicks"].with_columns(pl.lit(1).alias("surprise")))
