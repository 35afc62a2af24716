"""Hand-written logs in the exact shape of docs/log-format.md, for the pipeline's tests.

`LogBuilder` makes click, postback and unrouted records as the receiver writes them
(fields filled from the click the way receiver.postbacks does, offers as the demo network
configures them), and writes them with receiver.contract.framing.encode_record into
DATA/log/segment-NNNNNNNN.ndjson.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from clickledger.demo import DEMO_CONFIG, write_demo_config
from receiver.contract.config import Config
from receiver.contract.config_file import parse_config
from receiver.contract.framing import SEGMENT_GLOB, encode_record
from receiver.contract.params import DIALECTS, normalise_status
from receiver.contract.timeutil import format_utc

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

FX_CSV = "date,currency,rate\n2024-04-01,EUR,1.1\n2024-05-01,EUR,1.2\n2024-04-01,GBP,1.25\n"


def demo_config() -> Config:
    """The demo network's config (clickledger.demo.DEMO_CONFIG), parsed."""
    return parse_config(DEMO_CONFIG.format(public_url="http://127.0.0.1:8080"))


# (partner, offer currency, revenue share percent, fixed, status_updates) per active demo offer.
# Kept as written rather than read from the demo config: taskwall's status_updates is false here
# (true in the demo config), and the earn tests that leave `status_updates` unset were written with it.
OFFERS = {
    "acme-shop": ("acme", "USD", "70", None, False),
    "moustache-survey": ("moustache", "USD", None, "1.5", True),
    "peer-app": ("peerclick", "EUR", "60", None, True),
    "cw-1001": ("clickwall", "GBP", "50", None, False),
    "taskwall-tasks": ("taskwall", "USD", "50", None, False),
}
DIALECT_ROUTES = {dialect: route for route, dialect in DIALECTS.items()}


def cid(n: int) -> str:
    """A deterministic UUID-shaped click id."""
    return f"00000000-0000-4000-8000-{n:012d}"


def make_data_dir(path: Path, fx: str | None = FX_CSV) -> Path:
    """A data dir with the demo config and (optionally) a small fx_rates.csv."""
    write_demo_config(path)
    if fx is not None:
        (path / "fx_rates.csv").write_text(fx, encoding="utf-8")
    return path


class LogBuilder:
    def __init__(self, start: datetime = T0):
        self.records: list[dict[str, Any]] = []
        self.clicks: dict[str, dict[str, Any]] = {}
        self.now = start
        self._n = 0

    def _event_id(self) -> str:
        self._n += 1
        return str(uuid.UUID(int=self._n))

    def _at(self, at: datetime | None) -> datetime:
        if at is None:
            self.now += timedelta(seconds=1)
            return self.now
        return at

    def _base(self, kind: str, route: str | None, method: str, path: str, at: datetime | None) -> dict[str, Any]:
        return {
            "v": 1, "seq": None, "event_id": self._event_id(), "received_at": format_utc(self._at(at)),
            "kind": kind, "route": route, "method": method, "path": path, "query": "", "body": "",
            "body_encoding": "utf-8", "body_bytes": 0, "body_truncated": False, "content_type": None,
            "remote_addr": "203.0.113.7", "forwarded_for": None, "user_agent": "test-agent", "referer": None,
            "http_status": 200, "result": None, "error": None, "fields": {}, "custom_data": {},
        }

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        record["seq"] = len(self.records) + 1
        self.records.append(record)
        return record

    def click(self, click_id: str, *, offer_id: str = "acme-shop", affiliate_id: str | None = "aff1",
              user_id: str | None = None, product_id: str | None = None, ttl_hours: float | None = None,
              at: datetime | None = None, snapshot: bool = True, custom_data: dict | None = None,
              percent: str | None = "default", fixed: str | None = "default",
              offer_currency: str | None = None) -> dict[str, Any]:
        partner, currency, pct, fix, _ = OFFERS[offer_id]
        earn = user_id is not None
        route = "/api/v1/earn/products/{product_id}/click" if earn else "/t/{slug}"
        rec = self._base("click", route, "POST" if earn else "GET",
                         f"/api/v1/earn/products/{product_id}/click" if earn else "/t/slug", at)
        when = datetime.fromisoformat(rec["received_at"].replace("Z", "+00:00"))
        expires = when + timedelta(hours=ttl_hours) if ttl_hours else None
        fields = {
            "click_id": click_id, "source": "earn" if earn else "link", "offer_id": offer_id, "partner_id": partner,
            "affiliate_id": None if earn else affiliate_id, "user_id": user_id, "product_id": product_id,
            "expires_at": format_utc(expires) if expires else None, "redirect_url": "https://x.example/",
        }
        if earn:
            fields["task_url"] = "https://advertiser.example/offer"
        else:
            fields["slug"] = "slug"
        if snapshot:
            fields.update(offer_currency=offer_currency or currency,
                          revenue_share_percent=pct if percent == "default" else percent,
                          revenue_share_fixed=fix if fixed == "default" else fixed)
        rec.update(http_status=201 if earn else 302, result="click", fields=fields, custom_data=custom_data or {})
        self.clicks[click_id] = fields
        return self.add(rec)

    def postback(self, click_id: str | None, *, transaction_id: str | None = None, status: str | None = None,
                 amount: str | None = None, commission: str | None = None, currency: str | None = None,
                 result: str | None = None, error: str | None = None, http_status: int | None = None,
                 dialect: str = "network", at: datetime | None = None, status_updates: bool | None = None,
                 key_partner_id: str | None = None, campaign_id: str | None = None,
                 custom_data: dict | None = None, path: str | None = None) -> dict[str, Any]:
        route = DIALECT_ROUTES[dialect]
        rec = self._base("postback", route, "GET", path or route.replace("{key}", "k"), at)
        click = self.clicks.get(click_id) if click_id else None
        offer = OFFERS[click["offer_id"]] if click else None
        norm = normalise_status(status)
        fields: dict[str, Any] = {
            "dialect": dialect, "click_id": click_id, "transaction_id": None, "transaction_id_source": None,
            "status_raw": status, "status": norm, "amount": None, "commission": None,
            "commission_sent": commission is not None, "currency": None, "currency_source": None,
            "campaign_id": campaign_id, "key_present": key_partner_id is not None,
            "key_source": "param" if key_partner_id else None, "key_fingerprint": None,
            "key_partner_id": key_partner_id, "partner_id": None, "offer_id": None, "affiliate_id": None,
            "user_id": None, "product_id": None, "click_source": None, "status_updates": None,
        }
        if click_id:
            fields["transaction_id"] = transaction_id or click_id
            fields["transaction_id_source"] = "param" if transaction_id else "default"
            fields["amount"] = amount or "0"
            fields["commission"] = commission or "0"
            if currency:
                fields["currency"], fields["currency_source"] = currency, "param"
        if click:
            fields.update(partner_id=click["partner_id"], offer_id=click["offer_id"],
                          affiliate_id=click["affiliate_id"], user_id=click["user_id"],
                          product_id=click["product_id"], click_source=click["source"],
                          status_updates=offer[4] if status_updates is None else status_updates)
            if fields["currency"] is None:
                fields["currency"], fields["currency_source"] = offer[1], "offer"
        if result is None and error is None:
            result = "recorded"
        if error is not None:
            http_status = http_status or {"click_id_required": 400, "api_key_required": 401,
                                          "invalid_api_key": 403, "campaign_mismatch": 403,
                                          "click_not_found": 404, "click_expired": 410}.get(error, 400)
        rec.update(result=result, error=error, http_status=http_status or 200, fields=fields,
                   custom_data=custom_data or {})
        return self.add(rec)

    def unrouted(self, path: str, click_id: str | None, at: datetime | None = None) -> dict[str, Any]:
        rec = self._base("unrouted", None, "GET", path, at)
        rec.update(http_status=404, error="not_found", fields={"click_id": click_id},
                   custom_data={"click_id": click_id} if click_id else {})
        return self.add(rec)

    def write(self, data_dir: Path, *, segments: int = 1, torn_tail: bytes | None = None) -> list[Path]:
        """Write the records (split evenly over `segments` files); optionally append a torn last line."""
        log_dir = data_dir / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        for old in log_dir.glob(SEGMENT_GLOB):  # both forms
            old.unlink()
        paths = []
        size = max(1, -(-len(self.records) // segments))
        for i in range(segments):
            chunk = self.records[i * size:(i + 1) * size]
            path = log_dir / f"segment-{i + 1:08d}.ndjson"
            data = b"".join(encode_record(r) for r in chunk)
            if torn_tail is not None and i == segments - 1:
                data += torn_tail
            path.write_bytes(data)
            paths.append(path)
        return paths


def traffic_log(data_dir: Path, *, clicks: int = 60, segments: int = 4) -> LogBuilder:
    """A data dir (demo config, fx rates) whose log holds `clicks` clicks over `segments` plain
    segments: most with an approved or pending postback, some with a status update or a
    duplicate, and postbacks for unknown click ids."""
    make_data_dir(data_dir)
    log = LogBuilder()
    for n in range(1, clicks + 1):
        log.click(cid(n), offer_id="acme-shop" if n % 3 else "peer-app")
        if n % 4:
            log.postback(cid(n), transaction_id=f"T{n}", status="approved" if n % 2 else "pending", amount="10.00")
        if n % 7 == 0:
            log.postback(cid(n), transaction_id=f"T{n}", status="approved", amount="10.00",
                         result="duplicate" if n % 4 else "recorded")
        if n % 11 == 0:
            log.postback(cid(10_000 + n), transaction_id=f"U{n}", status="approved", amount="1.00",
                         error="click_not_found")
    log.write(data_dir, segments=segments)
    return log


def fx_frame(text: str = FX_CSV):
    """The fx rates of `text` as the pipeline reads them."""
    import tempfile

    from pipeline.fx import read_fx_rates

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fx_rates.csv"
        path.write_text(text, encoding="utf-8")
        return read_fx_rates(path)


def conversions_from_records(records: list[dict[str, Any]], config=None, rates=None):
    """The conversions of hand-made records, in memory (no files): staging, checks, derivation."""
    from pipeline.conversions import build_conversions, check_consistency
    from pipeline.errors import PipelineConsistencyError
    from pipeline.events import build_clicks, build_postbacks
    from pipeline.staging import _row, stage_rows

    config = config or demo_config()
    rates = fx_frame() if rates is None else rates
    events = stage_rows([_row(r, "segment-00000001.ndjson", i) for i, r in enumerate(records, start=1)])
    events = events.sort("seq")
    problems = check_consistency(events)
    if problems:
        raise PipelineConsistencyError(problems)
    clicks = build_clicks(events, config)
    postbacks = build_postbacks(events)
    return build_conversions(postbacks, clicks, rates, config.base_currency)
