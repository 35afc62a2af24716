"""What the contract brought into the tables: the postbacks' client_ip and signature_present
(written since the receiver judged them, staged only now), and the configured base currency
where a currency was missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipeline import staging
from pipeline.runner import derive, run
from pipeline.schemas import polars_schema
from pipeline.warehouse import Warehouse, load
from receiver.contract.config_file import parse_config
from receiver.contract.datadir import DataDir
from tests.support.log_builder import LogBuilder, cid, conversions_from_records, fx_frame
from tests.support.network import TEST_CONFIG
from tests.support.traffic import FX_RATES, send_every_kind

EUR_CONFIG = TEST_CONFIG.replace('base_currency = "USD"', 'base_currency = "EUR"')


def postbacks_of(data_dir: Path, **kwargs: Any) -> pl.DataFrame:
    tables, _ = derive(data_dir, **kwargs)
    return tables["postbacks"]


def test_postbacks_table_has_client_ip_and_signature_present(harness: Any) -> None:
    sent = send_every_kind(harness)
    harness.close()
    DataDir(harness.data_dir).fx_rates_path.write_text(FX_RATES, encoding="utf-8")
    postbacks = postbacks_of(harness.data_dir)
    assert {"client_ip", "signature_present"} <= set(polars_schema("postbacks"))
    rows = {row["event_id"]: row for row in postbacks.iter_rows(named=True)}
    checked = 0
    for exchange in sent.values():
        record = exchange.record
        if record["kind"] != "postback":
            continue
        row = rows[record["event_id"]]
        assert row["client_ip"] == record["fields"].get("client_ip")
        assert row["signature_present"] == record["fields"].get("signature_present")
        checked += 1
    assert checked == len(postbacks)
    signed = rows[sent["postback recorded"].record["event_id"]]
    assert signed["signature_present"] is True and signed["client_ip"] == "127.0.0.1"
    assert rows[sent["postback duplicate"].record["event_id"]]["signature_present"] is False
    body_refused = rows[sent["postback invalid body"].record["event_id"]]
    assert body_refused["client_ip"] == "127.0.0.1" and body_refused["signature_present"] is None
    assert rows[sent["wrong method"].record["event_id"]]["client_ip"] is None


def test_a_staging_cache_of_the_previous_version_is_staged_again(harness: Any) -> None:
    send_every_kind(harness)
    harness.close()
    data = DataDir(harness.data_dir)
    first = postbacks_of(data)
    (cached,) = data.staging_dir.glob("segment-*.parquet")
    assert cached.name.endswith(f".v{staging.STAGING_VERSION}.parquet") and staging.STAGING_VERSION >= 3
    # what the previous version cached: the same rows without the two columns
    old = cached.with_name(cached.name.replace(f".v{staging.STAGING_VERSION}.", ".v2."))
    pl.read_parquet(cached).drop("client_ip", "signature_present").write_parquet(old)
    cached.unlink()
    again = postbacks_of(data)
    assert again.equals(first)
    assert not old.exists() and cached.exists()


def test_the_receiver_defaults_an_unconfigured_offers_currency_to_the_base_currency(make_harness: Any,
                                                                                      data_dir: Path) -> None:
    (data_dir / "config.toml").write_text(EUR_CONFIG, encoding="utf-8")
    harness = make_harness(data_dir)
    click_id = harness.link_click("hashed-1")
    # the offer (and its link) leave the config; the partner and the click stay
    without = EUR_CONFIG.replace('[[offers]]\nid = "hashed-offer"\npartner = "hashed"\nurl = "https://hashed.example/"\n',
                                 "").replace('[[links]]\nslug = "hashed-1"\noffer = "hashed-offer"\n'
                                             'affiliate = "aff4"\n', "")
    assert "hashed-offer" not in without
    harness.rewrite_config(without)
    exchange = harness.get("/api/postback", params={"click_id": click_id, "api_key": "key-hashed", "amount": "5"})
    assert exchange.json == {"ok": True, "result": "recorded"}
    assert (exchange.fields["currency"], exchange.fields["currency_source"]) == ("EUR", "default")


def demo_text_in_eur() -> str:
    from clickledger.demo import DEMO_CONFIG

    text = DEMO_CONFIG.format(public_url="http://127.0.0.1:8080")
    assert 'base_currency = "USD"' in text
    return text.replace('base_currency = "USD"', 'base_currency = "EUR"')


def test_conversions_default_a_missing_currency_to_the_base_currency() -> None:
    config = parse_config(demo_text_in_eur())
    assert config.base_currency == "EUR"
    log = LogBuilder()
    # a recorded postback for a click the log does not hold: no currency sent, none from an offer
    log.postback(cid(1), transaction_id="t1", amount="10", status="approved")
    # a fixed payout whose click snapshot lost its currency
    fixed = log.click(cid(2), offer_id="moustache-survey", percent=None, fixed="1.5")
    fixed["fields"]["offer_currency"] = None
    log.postback(cid(2), transaction_id="t2", amount="3", currency="GBP", status="approved")
    conversions = conversions_from_records(log.records, config, fx_frame())
    by_click = {row["click_id"]: row for row in conversions.iter_rows(named=True)}
    assert by_click[cid(1)]["currency"] == "EUR" and by_click[cid(1)]["base_currency"] == "EUR"
    assert by_click[cid(2)]["affiliate_payout_source"] == "fixed"
    assert by_click[cid(2)]["affiliate_payout_currency"] == "EUR"


def test_warehouse_base_currency(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    data.warehouse_dir.mkdir()
    empty = {"conversions": pl.DataFrame(schema=polars_schema("conversions"))}
    assert Warehouse(empty).base_currency == "USD"  # no data directory: the config's default
    data.config_path.write_text(EUR_CONFIG, encoding="utf-8")
    assert Warehouse(empty, data.warehouse_dir).base_currency == "EUR"  # no conversion yet: the config's
    data.config_path.write_text("base_currency = 12", encoding="utf-8")
    assert Warehouse(empty, data.warehouse_dir).base_currency == "USD"  # a broken config: the default


def test_warehouse_base_currency_is_the_conversions(harness: Any) -> None:
    send_every_kind(harness)
    harness.close()
    data = DataDir(harness.data_dir)
    data.fx_rates_path.write_text(FX_RATES, encoding="utf-8")
    run(data)
    data.config_path.write_text(EUR_CONFIG, encoding="utf-8")  # changed since the run: the tables still say USD
    wh = load(data)
    assert wh.conversions.height and wh.base_currency == "USD"
