"""The contract changed where the record, the framing and the paths are defined, not what is
written or derived: the same traffic gives the same log bytes, ledger bytes and tables as
before it (but for the two postbacks columns it added).

The fingerprints below were taken on main before the contract (commit 564639a) by running
this test's traffic and `fingerprints` there; they hash the bytes of the log and the
ledger, and every table's column names and values (as Python values, so a Polars upgrade
does not move them). A change that means to change the log or a table updates them, and
says so.

Partner profiles (issue 12) added a record member and postbacks columns, and the traffic of
a profile partner: the seed dialects' traffic alone (profiles=False) still gives the same log,
once each record is written without the added member, and the same tables without the added
columns. The survey mapping (issue 14) added three conversions columns, dropped here likewise.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from pipeline.runner import credit, derive
from receiver.contract.framing import encode_record, iter_log
from tests.support.traffic import FX_RATES, send_every_kind

ADDED_COLUMNS = {"postbacks": ["client_ip", "signature_present",  # new with the contract
                               # new with partner profiles
                               "preset", "reversal", "reversal_transaction_id", "reversal_amount",
                               "sent_user_id", "sent_offer_id", "survey_id"],
                 # new with the survey mapping (issue 14)
                 "conversions": ["survey_id", "campaign_id", "campaign_match"]}
ADDED_TABLES = ("deliveries", "delivery_attempts")  # new with the forwarder (issue 14): none forwarded here
ADDED_MEMBERS = ("answer_body",)  # new with partner profiles: null in every record of this traffic

BEFORE = {
    'log': 'c5a574b566f59659125d3c41925bb43e8b33c8768cdf3ddddc76be5b033ded80',
    'ledger': 'f8aaf6817fb8d3b155f3e99154569da0f1b8f4ba1d7ce65b14a988a07b4b574d',
    'clicks': '28694c6da6fc265181c00e744f967cfee629714f57bd6a478208aa41cf781fae',
    'conversions': 'c6cb9a25fd5d8002961c3d001dcaa16268a34f5b2db200665f9b17944cbe9938',
    'earnings': '57e53614f21b5d45dc61ce30ea3930044772a3cde51cbfa4e49198c32507ee21',
    'fx_rates': '2fa5c1a7f7bfbce952a1481a685cfcc8a8411e706d898e0043587d4f5494a996',
    'postback_issues': '8f200816cf386ed81455a982954aad7266182d80fec1e173c2053ad512a46b50',
    'postbacks': 'd2d9c4766a34cac4f862362135d84caca27785f84e938be6320dc85e5fcb9084',
    'wallet_balances': '5bfa070e342a94fa6efd028e2be3ed92895d94d21b4735a6a5158b4be3ed6254',
    'wallet_credits': '7f151d32504e98797ca31c74ce0e0f4199def3b475aee61103de48178894f09f',
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprints(data_dir: Path) -> dict[str, str]:
    """sha256 of the log's and the ledger's bytes, and of each derived table's columns and rows."""
    log = b"".join(encode_record({name: value for name, value in record.items()
                                  if name != "crc32" and not (name in ADDED_MEMBERS and value is None)})
                   for record in iter_log(data_dir / "log"))
    ledger = b"".join(path.read_bytes() for path in sorted((data_dir / "ledger").glob("*.ndjson")))
    tables, _ = derive(data_dir)
    found = {"log": _sha(log), "ledger": _sha(ledger)}
    for name, frame in sorted(tables.items()):
        if name in ADDED_TABLES:
            assert frame.is_empty()  # nothing forwarded: the derivation of the others is what is compared
            continue
        frame = frame.drop(*ADDED_COLUMNS.get(name, []), strict=False)  # absent before the contract
        found[name] = _sha(orjson.dumps([frame.columns, frame.rows()], default=str))
    return found


def test_same_traffic_same_log_ledger_and_tables(harness: Any) -> None:
    send_every_kind(harness, profiles=False)
    harness.close()
    (harness.data_dir / "fx_rates.csv").write_text(FX_RATES, encoding="utf-8")
    report = credit(harness.data_dir, now=datetime(2024, 1, 2, tzinfo=UTC), batch_id="contract")
    assert report.credits  # the earn conversions reached the ledger
    assert fingerprints(harness.data_dir) == BEFORE
