"""No api key in any derived file (issue 15): a traffic mix sends keys in every place a request can
carry one; after a pipeline run and a CSV export, no Parquet file (staging cache and tables, read
column by column and as raw bytes), no DuckDB file, no CSV and no support view holds any of them.
Each key's fingerprint stands in its place. The raw log alone keeps them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pipeline
from clickledger.cli import main
from pipeline.story import click_story, for_support
from receiver.contract.config import key_digest, key_fingerprint
from tests.support.network import HASHED_KEY

# Every secret the mix sends: configured partners' keys, and secrets no partner has.
PARTNER_KEYS = ("key-alpha", "key-beta", "key-prof", HASHED_KEY)
OTHER_SECRETS = ("sk-wrong-key-123", "sk-unknown-path-key-1", "sk-unrouted-key-2", "tok-unknown-token-3",
                 "sig-abcdef-0123", "sk-nested-secret-4", "sk-custom-key-5", "sk-referer-key-6",
                 "sk-form-key-7", "sk-json-key-8", "pw-password-9")
SECRETS = (*PARTNER_KEYS, *OTHER_SECRETS)


def fingerprint(key: str) -> str:
    return key_fingerprint(key_digest(key))


def send_keys_everywhere(h: Any) -> dict[str, str]:
    """The traffic mix: keys in the path, query, form and JSON bodies, custom_data, the Referer,
    unrouted paths, refusals (403, 404, 405), duplicates. Returns the click ids made."""
    referer = {"Referer": "https://aff.example/postback/sk-referer-key-6?api_key=key-beta&x=1"}
    alpha = h.link_click("alpha-1", api_key="key-beta", note="plain")  # a key in a click's custom_data
    h.get("/t/alpha-1", headers=referer, params={"token": "tok-unknown-token-3"})
    prof = h.link_click("prof-1")
    hashed = h.link_click("hashed-1")
    ok = {"ok": True, "result": "recorded"}
    # query string, then its duplicate
    assert h.get("/api/postback", params={"api_key": "key-alpha", "click_id": alpha, "transaction_id": "Q1"},
                 headers=referer).json == ok
    assert h.get("/api/postback", params={"api_key": "key-alpha", "click_id": alpha,
                                          "transaction_id": "Q1"}).json["result"] == "duplicate"
    # form body; JSON body with secrets nested in custom_data
    form = f"api_key=key-alpha&click_id={alpha}&transaction_id=F1&client_secret=sk-form-key-7"
    assert h.post("/api/postback", body=form,
                  headers={"Content-Type": "application/x-www-form-urlencoded"}).json == ok
    body = {"api_key": "key-alpha", "click_id": alpha, "transaction_id": "J1", "apiKey": "sk-json-key-8",
            "extra": {"secret": "sk-nested-secret-4", "list": [{"password": "pw-password-9"}]}}
    assert h.post("/api/postback", json=body).json == ok
    # custom_data: secret-like names, and a URL carrying a key in a plain parameter
    assert h.get("/api/postback", params={
        "api_key": "key-alpha", "click_id": alpha, "transaction_id": "C1", "my_token": "tok-unknown-token-3",
        "signature": "sig-abcdef-0123", "partner_key": "x", "x-api-key": "sk-custom-key-5",
        "ref": "https://x.example/postback/key-beta?key=key-prof"}).json == ok
    # the key in the path: the publisher dialect and a profile partner, then duplicates
    for _ in range(2):
        h.get("/postback/key-alpha", params={"click_id": alpha, "transaction_id": "P1"})
        h.get("/postback/key-prof", params={"click_id": prof, "transaction_id": "K1"})
    assert h.get("/api/postback", params={"api_key": HASHED_KEY, "click_id": hashed}).json == ok
    # refused: a wrong key (403), an unknown click (404), a wrong method (405) with and without a path key
    assert h.get("/api/postback", params={"api_key": "sk-wrong-key-123", "click_id": alpha}).status == 403
    assert h.get("/postback/sk-unknown-path-key-1", params={"click_id": alpha}).status == 403
    assert h.get("/api/postback", params={"api_key": "key-alpha", "click_id": "no-such-click"}).status == 404
    assert h.get("/postback/key-beta", params={"click_id": "no-such-click"}).status == 404
    assert h.request("DELETE", "/api/postback", params={"api_key": "key-alpha", "click_id": alpha}).status == 405
    assert h.request("PUT", "/postback/key-beta", params={"click_id": alpha, "secret": "sk-custom-key-5"}).status == 405
    # unrouted: a key in a path we do not serve
    for path in ("/postback/key-beta/extra", "/postbacks/key-alpha", "/api/postback/sk-unrouted-key-2",
                 "/postback/sk-unrouted-key-2/x/y"):
        assert h.get(path, params={"click_id": alpha, "api_key": "key-prof"}).status == 404
    return {"alpha": alpha, "prof": prof, "hashed": hashed}


def string_values(frame: pl.DataFrame) -> list[str]:
    """Every string in a frame: its string columns, and lists and structs of strings, as text."""
    out: list[str] = []
    for name, dtype in frame.schema.items():
        column = frame[name]
        if dtype == pl.String:
            out += column.drop_nulls().to_list()
        elif dtype.is_nested():
            out += [json.dumps(v, default=str) for v in column.drop_nulls().to_list()]
        elif dtype == pl.Categorical or dtype == pl.Enum:
            out += column.cast(pl.String).drop_nulls().to_list()
    return out


def found_secrets(texts: list[str]) -> dict[str, list[str]]:
    return {key: [t[:120] for t in texts if key in t][:3] for key in SECRETS if any(key in t for t in texts)}


def test_no_key_in_any_parquet_file_csv_export_or_support_view(make_harness, data_dir: Path, tmp_path: Path,
                                                               capsys) -> None:
    h = make_harness(data_dir)
    clicks = send_keys_everywhere(h)
    h.close()
    # the raw log keeps every key, as documented
    raw_log = b"".join(p.read_bytes() for p in (data_dir / "log").glob("*.ndjson"))
    assert all(key.encode() in raw_log for key in SECRETS if key != "sk-json-key-8") and b"sk-json-key-8" in raw_log

    assert main(["run", "--data", str(data_dir)]) == 0
    statement = tmp_path / "alpha.csv"
    statement.write_text(f"click_id,transaction_id,status,amount,currency\n{clicks['alpha']},Q1,approved,10,EUR\n"
                         f"{clicks['alpha']},Z9,approved,5,EUR\n", encoding="utf-8")
    export = tmp_path / "alpha-reconciled.csv"
    assert main(["reconcile", "--data", str(data_dir), "--partner", "alpha", "--statement", str(statement),
                 "--out", str(export)]) == 0
    capsys.readouterr()

    parquet = sorted(data_dir.rglob("*.parquet"))
    # staging, the rows routed by click day, and every table (partitioned by click day or whole)
    assert all(any(part in p.parts for p in parquet) for part in ("staging", "by_click_day", "postback_issues"))
    for path in parquet:
        texts = string_values(pl.read_parquet(path))
        assert not found_secrets(texts), (path, found_secrets(texts))
        assert not [key for key in SECRETS if key.encode() in path.read_bytes()], path
    duckdb_files = list(data_dir.rglob("*.duckdb"))
    for path in duckdb_files:
        assert not [key for key in SECRETS if key.encode() in path.read_bytes()], path
    csv_text = export.read_text(encoding="utf-8")
    assert ",Q1," in csv_text and ",Z9,missing_ours," in csv_text and not found_secrets([csv_text])
    wh = pipeline.load(data_dir)
    for name in wh.tables:  # every table, also as a notebook downloads it
        from pipeline.reconciliation import csv_safe_bytes

        assert not found_secrets([csv_safe_bytes(getattr(wh, name)).decode("utf-8")]), name
    # what support reads of the raw log
    story = click_story(wh, clicks["alpha"], data_dir)
    assert story.requests.height >= 10
    shown = for_support(story.requests)
    assert not found_secrets(string_values(shown)), found_secrets(string_values(shown))

    # each key's fingerprint stands in its place, the one postbacks.key_fingerprint holds
    issues = wh.postback_issues
    paths = set(issues["path"].drop_nulls())
    assert f"/postback/[key:{fingerprint('key-alpha')}]" in paths  # the duplicate on the key's own URL
    assert f"/postback/[key:{fingerprint('sk-unknown-path-key-1')}]" in paths  # a key no partner has (403)
    assert f"/postback/[key:{fingerprint('key-beta')}]/extra" in paths  # unrouted
    assert f"/postbacks/[key:{fingerprint('key-alpha')}]" in paths
    assert f"/api/postback/[key:{fingerprint('sk-unrouted-key-2')}]" in paths
    staged = pl.concat([pl.read_parquet(p) for p in parquet if "staging" in p.parts])
    on_key_url = staged.filter(pl.col("path") == f"/postback/[key:{fingerprint('key-alpha')}]")
    assert on_key_url.height == 2 and set(on_key_url["key_fingerprint"]) == {fingerprint("key-alpha")}
    customs = [json.loads(c) for c in wh.postbacks["custom_data"].drop_nulls()]
    assert {"my_token": f"[key:{fingerprint('tok-unknown-token-3')}]", "partner_key": "x",
            "signature": f"[key:{fingerprint('sig-abcdef-0123')}]",
            "ref": f"https://x.example/postback/[key:{fingerprint('key-beta')}]?key=[key:{fingerprint('key-prof')}]",
            "x-api-key": f"[key:{fingerprint('sk-custom-key-5')}]"} in customs
    assert {"apiKey": f"[key:{fingerprint('sk-json-key-8')}]", "extra": {
        "secret": f"[key:{fingerprint('sk-nested-secret-4')}]",
        "list": [{"password": f"[key:{fingerprint('pw-password-9')}]"}]}} in customs
    # a 405 with api_key= keeps the parameter's name, not the key
    method_refused = issues.filter(pl.col("reason") == "method_not_allowed")
    assert method_refused.height == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("GET /postback/key-alpha?api_key=key-beta HTTP/1.1",
     f"GET /postback/[key:{fingerprint('key-alpha')}]?api_key=[key:{fingerprint('key-beta')}] HTTP/1.1"),
    ("GET /t/x?a=1 HTTP/1.1", "GET /t/x?a=1 HTTP/1.1"),
])
def test_an_http_error_request_line_is_masked(text: str, expected: str) -> None:
    from pipeline.secrets import mask_secrets

    assert mask_secrets(text) == expected


def test_an_http_error_header_lines_are_masked() -> None:
    from pipeline.secrets import mask_headers

    crlf = "\\x0d\\x0a"
    headers = (f"Host: rx{crlf}X-API-Key: key-alpha{crlf}Authorization: Bearer tok-1{crlf}"
               f"Referer: https://a.example/postback/key-beta?x=1{crlf}User-Agent: curl{crlf}{crlf}")
    assert mask_headers(headers) == (
        f"Host: rx{crlf}X-API-Key: [key:{fingerprint('key-alpha')}]{crlf}"
        f"Authorization: Bearer [key:{fingerprint('tok-1')}]{crlf}"
        f"Referer: https://a.example/postback/[key:{fingerprint('key-beta')}]?x=1{crlf}User-Agent: curl{crlf}{crlf}")
