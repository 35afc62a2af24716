"""The Falcon app: every request becomes one durable log record before it is answered.

`create_app(settings, ...)` builds it; clock, id generator and log writer are
injected so tests pass a fixed clock and predictable ids. `RequestRecorder` is the
one place that writes records and the one place that turns a failed write into 503:
refused, unrouted and malformed requests are logged like accepted ones.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import falcon
import orjson

from receiver.clicks import earn_click, link_click, link_probe
from receiver.compression import BackgroundCompressor
from receiver.config_store import ConfigStore
from receiver.contract.codes import is_permanent
from receiver.contract.datadir import DataDir
from receiver.contract.framing import compressed_path
from receiver.contract.params import (
    DIALECTS,
    ParamError,
    custom_data,
    decode_body,
    find_click_id,
    merge_params,
    parse_body,
    parse_query,
)
from receiver.contract.profiles import PROFILE_DIALECT, Answer
from receiver.contract.record import (
    ANY_RECORD_FIELDS,
    CLICK_FIELDS,
    POSTBACK_FIELDS,
    PROBE_FIELDS,
    TRACK_FIELDS,
    new_record,
)
from receiver.contract.timeutil import format_utc, utc_now
from receiver.errors import HTTP_STATUS, Refusal, code_for_status
from receiver.log import LogRecordError, LogWriteError, SegmentWriter
from receiver.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from receiver.metrics import ReceiverMetrics
from receiver.openapi import METRICS_PATH, OPENAPI_PATH, document_bytes
from receiver.postbacks import PostbackInput, decide_postback, request_part
from receiver.signatures import SIGNATURE_HEADERS, SignedRequest
from receiver.snapshot import (
    build_sidecar,
    build_sidecar_in_child,
    load_indexes,
    write_base,
)

log = logging.getLogger("clickledger.receiver")

MAX_BODY_BYTES = 1024 * 1024  # larger bodies are refused with 413 (and logged, truncated)
MAX_LOGGED_BODY_BYTES = 64 * 1024


class RandomUUIDs:
    """Random UUID v4 strings, as str(uuid.uuid4()) gives them, at a fraction of the cost.

    Each thread draws from its own pool of os.urandom bytes, 256 ids at a time: every
    os.urandom call releases the GIL (a thread hand-off under load), and a pool shared
    behind a lock made a lock convoy of every request thread (measured: 5x slower at 64
    connections).
    """

    BATCH = 256

    def __init__(self) -> None:
        self._local = threading.local()
        os.register_at_fork(after_in_child=self._forget)  # a child must never reuse our bytes

    def _forget(self) -> None:
        self._local = threading.local()

    def __call__(self) -> str:
        local = self._local
        pool = getattr(local, "pool", b"")
        start = getattr(local, "next", 0)
        if start >= len(pool):
            pool, start = os.urandom(16 * self.BATCH), 0
            local.pool = pool
        local.next = start + 16
        raw = bytearray(pool[start:start + 16])
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


new_uuid = RandomUUIDs()


@dataclass
class Settings:
    data_dir: Path
    max_body_bytes: int = MAX_BODY_BYTES
    max_logged_body_bytes: int = MAX_LOGGED_BODY_BYTES
    segment_bytes: int | None = None
    # Load shedding: past this many requests waiting for a worker thread, answer 503 at once
    # (logged) instead of queueing without bound. None: no shedding (no server queue to read).
    max_queue: int | None = None

    @property
    def data(self) -> DataDir:
        return DataDir(self.data_dir)

    @property
    def log_dir(self) -> Path:
        return self.data.log_dir

    @property
    def config_path(self) -> Path:
        return self.data.config_path


class UnloggedCounts:
    """Requests that never became a log record, by why, since this process started (in /healthz).

    Only what cannot be logged is here: a request the client never finished sending
    (`incomplete`: it closed the connection, or stalled until the server's channel_timeout,
    in the middle of the head or the body), and a complete one whose client had already
    closed the connection when a worker was free to serve it (`abandoned`: the server drops
    it unserved, and no answer could reach the client). Neither got an answer, so a sender
    that waits for one sends it again. Every request received whole and answered is logged.
    """

    WHY = ("incomplete", "abandoned")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.WHY, 0)

    def add(self, why: str, n: int = 1) -> None:
        if why not in self._counts:
            raise ValueError(f"unknown reason {why!r} (known: {', '.join(self.WHY)})")
        with self._lock:
            self._counts[why] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class Receiver:
    """What the resources share: config, indexes, the log writer, clock and ids."""

    def __init__(self, settings: Settings, writer: SegmentWriter | None, clock: Callable[[], datetime],
                 new_click_id: Callable[[], str], new_event_id: Callable[[], str],
                 queue_depth: Callable[[], int] | None = None):
        self.settings = settings
        self.queue_depth = queue_depth
        self.config_store = ConfigStore(settings.config_path)
        self.index_dir = settings.data.index_dir
        self._cache_threads: list[threading.Thread] = []
        own_writer = writer is None
        if writer is None:
            # The writer first: its lock makes this process the log's only writer before any
            # derived cache is written. Its seq is set once the indexes know the log's top.
            kwargs = {"max_segment_bytes": settings.segment_bytes} if settings.segment_bytes else {}
            writer = SegmentWriter(settings.log_dir, next_seq=1, on_sealed=self._segment_sealed, **kwargs)
        try:
            loaded = load_indexes(settings.log_dir, self.index_dir, on_bad=lambda bad: log.warning(
                "skipping %s record at %s line %d", "torn" if bad[2] else "corrupt", bad[0], bad[1]))
        except BaseException:
            if own_writer:
                writer.close()
            raise
        self.clicks, self.conversions = loaded.clicks, loaded.conversions
        self.index_summary = loaded.describe()
        log.info("%s", self.index_summary)
        if own_writer:
            writer.resume_at(loaded.top_seq + 1)
        if loaded.base_stale:
            # One file for the next start instead of every sidecar; written while we serve.
            self._in_background(write_base, self.index_dir, loaded.data)
        # Sealed segments are compressed in the background: now those a crash or the last stop
        # left plain, then each one the writer rotates past (receiver.compression).
        self.compressor = BackgroundCompressor(settings.log_dir) if own_writer else None
        if self.compressor is not None:
            self.compressor.request(writer.sealed_at_start)
        self.writer = writer
        self.clock = clock
        self.new_click_id = new_click_id
        self.new_event_id = new_event_id
        self.unlogged = UnloggedCounts()
        self.metrics = ReceiverMetrics(self)
        writer.on_batch = self.metrics.observe_batch

    @property
    def config(self):
        return self.config_store.current()

    def _in_background(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name="clickledger-index-cache", daemon=True)
        self._cache_threads.append(thread)
        thread.start()

    def _segment_sealed(self, segment: Path) -> None:
        """A rotated segment gets its sidecar now, so the next start need not read it, then its
        compressed form (one after the other: two children at once would compete for the cores)."""
        self._in_background(self._seal, segment)

    def _seal(self, segment: Path) -> None:
        _build_sidecar_quietly(segment, self.index_dir, True)
        if getattr(self, "compressor", None) is not None:  # (a rotation while __init__ still runs)
            self.compressor.request([segment])

    def close(self) -> None:
        segment = self.writer.segment_path
        self.writer.close()
        # A clean shutdown seals the last segment: its sidecar saves the next start reading it
        # (that start compresses it).
        if segment is not None and segment.parent == self.settings.log_dir and segment.exists():
            _build_sidecar_quietly(segment, self.index_dir)
        for thread in self._cache_threads:
            thread.join()
        self._cache_threads.clear()
        if self.compressor is not None:
            self.compressor.close()


# From this size on, a sealed segment's sidecar is built in a child process: scanning it in
# this one would hold the GIL for ~25 ms per MiB while requests wait (the default segment
# is 64 MiB). Smaller ones (tests, tiny deployments) are not worth a process.
CHILD_SIDECAR_BYTES = 4 * 1024 * 1024


def _build_sidecar_quietly(segment: Path, index_dir: Path, serving: bool = False) -> None:
    # The compressor may compress a sealed segment while its sidecar is being scanned (it takes
    # every sealed plain segment): the scan then fails, and is made again from the compressed form.
    for attempt in (segment, compressed_path(segment)):
        try:
            if serving and attempt.stat().st_size >= CHILD_SIDECAR_BYTES:
                build_sidecar_in_child(attempt, index_dir)
            else:
                build_sidecar(attempt, index_dir)
            return
        except Exception as exc:  # a derived cache: the next start rebuilds it from the segment
            if attempt == segment and not segment.exists() and compressed_path(segment).exists():
                continue
            log.warning("no index sidecar for %s: %s", segment.name, exc)
            return


def answer(resp: falcon.Response, status: int, payload: dict[str, Any] | None) -> None:
    resp.status = status
    if payload is not None:
        resp.data = orjson.dumps(payload)
        resp.content_type = falcon.MEDIA_JSON


def body_members(body: bytes, limit: int, declared: int | None) -> tuple[str, str, int, bool]:
    """(body, body_encoding, body_bytes, body_truncated) as logged: at most `limit` bytes, text
    when it is UTF-8, else base64."""
    if not body and not declared:
        return "", "utf-8", 0, False
    kept = body[:limit]
    try:
        text, encoding = kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    size = max(len(body), declared or 0)  # a refused oversized body is not read to its end
    return text, encoding, size, size > limit


def write_record(receiver: Receiver, record: dict[str, Any]) -> None:
    """Append a request's record durably (raises LogWriteError when it cannot be)."""
    try:
        receiver.writer.append(record)
    except LogRecordError as exc:
        # Parsed values that JSON cannot hold must not cost the raw request its record.
        log.error("logging %s %s without its parsed fields: %s", record["method"], record["path"], exc)
        record.update(fields=ANY_RECORD_FIELDS.partial(unencodable=str(exc)[:200]), custom_data={})
        receiver.writer.append(record)


class RequestRecorder:
    """Middleware: reads the (bounded) body first, writes the request's record last."""

    def __init__(self, receiver: Receiver):
        self.receiver = receiver

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.received_at = self.receiver.clock()
        req.context.write_attempted = False
        resp.context.kind = "other"
        resp.context.route = None
        resp.context.result = None
        resp.context.error = None
        resp.context.fields = {}
        resp.context.custom_data = {}
        resp.context.answer_body = None
        limit = self.receiver.settings.max_body_bytes
        env = req.env
        if env.get("CONTENT_LENGTH") in (None, "", "0") and "HTTP_TRANSFER_ENCODING" not in env:
            body = b""  # no body announced (a GET postback or a click): nothing to read
        else:
            body = req.bounded_stream.read(limit + 1)
        req.context.body = body
        req.context.content = body if "HTTP_CONTENT_ENCODING" not in env else None  # decoded once routed
        req.context.max_body_bytes = limit
        if len(body) > limit:
            raise Refusal("body_too_large", f"request bodies are limited to {limit} bytes")

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        """Shed load once routed (so the logged 503 keeps its route and click id), before any work;
        then undo the body's Content-Encoding, so a refusal of it keeps its route too."""
        max_queue, depth = self.receiver.settings.max_queue, self.receiver.queue_depth
        # /metrics is not shed: an overload is when operations most need to see it
        if max_queue is not None and depth is not None and depth() > max_queue \
                and not isinstance(resource, MetricsResource):
            raise Refusal("overloaded", "the receiver is at capacity: send it again in a second")
        if req.context.content is None:
            try:
                decoded_content(req, limit=self.receiver.settings.max_body_bytes)
            except Refusal:
                # the record keeps its route, kind, and what the query string says
                params = merge_params(parse_query(req.query_string), {})
                resp.context.route = getattr(resource, "route", None)
                resp.context.kind = getattr(resource, "kind", "other")
                resp.context.fields = ANY_RECORD_FIELDS.partial(click_id=find_click_id(params))
                resp.context.custom_data = custom_data(params)
                raise

    def build_record(self, req: falcon.Request, resp: falcon.Response) -> dict[str, Any]:
        ctx = resp.context
        env = req.env
        body, body_encoding, body_bytes, body_truncated = body_members(
            req.context.get("body", b""), self.receiver.settings.max_logged_body_bytes, req.content_length)
        return new_record(  # seq: assigned by the writer, in append order
            event_id=self.receiver.new_event_id(),
            received_at=format_utc(req.context.received_at),
            kind=ctx.kind,
            route=ctx.route,
            method=req.method,
            path=req.path,
            query=req.query_string,
            body=body,
            body_encoding=body_encoding,
            body_bytes=body_bytes,
            body_truncated=body_truncated,
            content_type=req.content_type,
            remote_addr=req.remote_addr,
            forwarded_for=env.get("HTTP_X_FORWARDED_FOR"),
            user_agent=env.get("HTTP_USER_AGENT"),
            referer=env.get("HTTP_REFERER"),
            http_status=resp.status_code,
            answer_body=ctx.get("answer_body"),
            result=ctx.result,
            error=ctx.error,
            fields=ctx.fields if "HTTP_CONTENT_ENCODING" not in env else
            {**ctx.fields, "content_encoding": env["HTTP_CONTENT_ENCODING"]},
            custom_data=ctx.custom_data,
        )

    def commit(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Write this request's record now (raises LogWriteError); the middleware will not write it again.

        One write attempt per request: when it fails, the 503 is answered (and logged as an error)
        once, by the error handler; the middleware does not try again to write the 503's record
        (on a full disk that was a second failed write and a second error line per request).
        """
        record = self.build_record(req, resp)
        req.context.write_attempted = True
        write_record(self.receiver, record)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        if req.context.get("write_attempted") or isinstance(resource, MetricsResource):  # /metrics is not traffic
            return
        if "received_at" not in req.context:  # the request failed before process_request ran
            req.context.received_at = self.receiver.clock()
        if resp.context.get("route") is None and resource is not None:
            # e.g. 405: the path is known, so the record keeps its route, kind and click id
            resp.context.route = getattr(resource, "route", None)
            resp.context.kind = getattr(resource, "kind", resp.context.get("kind", "other"))
            if not resp.context.get("fields"):
                params = merge_params(parse_query(req.query_string), _safe_body_params(req))
                resp.context.fields = ANY_RECORD_FIELDS.partial(click_id=find_click_id(params))
                resp.context.custom_data = custom_data(params)
        try:
            self.commit(req, resp)
        except LogWriteError as exc:
            answer_log_unavailable(resp, exc)


class RequestCounter:
    """Middleware (listed before RequestRecorder, so its process_response runs after the record is
    written and the status is final): counts each answer in /metrics, except /metrics itself."""

    def __init__(self, metrics: ReceiverMetrics):
        self.metrics = metrics

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        if not isinstance(resource, MetricsResource):
            self.metrics.count_request(resp.context.get("route"), resp.status_code, resp.context.get("error"))


class MetricsResource:
    """GET /metrics: Prometheus text format (receiver.metrics), for metrics_allowed_ips only; not logged."""

    route = METRICS_PATH

    def __init__(self, receiver: Receiver):
        self.receiver = receiver

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        receiver = self.receiver
        if not receiver.config.metrics_allowed(req.remote_addr, req.env.get("HTTP_X_FORWARDED_FOR")):
            receiver.metrics.metrics_refused.inc()
            answer(resp, 403, {"ok": False, "error": "ip_not_allowed",
                               "message": "this address may not read /metrics (config metrics_allowed_ips)"})
            return
        resp.status = 200
        resp.data = receiver.metrics.exposition()
        resp.content_type = METRICS_CONTENT_TYPE


class LinkClickResource:
    """GET /t/{slug}: record a click and redirect to the offer (seed 003)."""

    kind = "click"

    route = "/t/{slug}"

    def __init__(self, receiver: Receiver, recorder: RequestRecorder):
        self.receiver = receiver
        self.recorder = recorder

    def on_get(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        resp.context.kind, resp.context.route = "click", self.route
        config = self.receiver.config
        click_id = self.receiver.new_click_id()
        made = link_click(config, slug, click_id, req.context.received_at)
        resp.context.custom_data = custom_data(merge_params(parse_query(req.query_string), {}))
        if made is None:
            link = config.links[slug]
            resp.context.fields = CLICK_FIELDS.partial(slug=slug, offer_id=link.offer, affiliate_id=link.affiliate)
            resp.context.result = "offer_inactive"
            resp.status = 302
            resp.location = config.homepage
            return
        resp.context.fields, resp.context.result = made.fields, "click"
        resp.status = 302
        resp.location = made.redirect_url
        # A click exists only once its record is durable: a 503 click must not convert later.
        self.recorder.commit(req, resp)
        self.receiver.clicks.add(made.click)

    def on_head(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        """A link checker's HEAD: the GET's status and Location, logged as a probe; no click is made,
        so no click id exists that a postback could ever convert."""
        resp.context.kind, resp.context.route = "probe", self.route
        config = self.receiver.config
        resp.context.custom_data = custom_data(merge_params(parse_query(req.query_string), {}))
        link = config.links.get(slug)
        if link is None:
            raise Refusal("link_not_found", f"no tracking link {slug!r}", fields=PROBE_FIELDS.partial(slug=slug))
        probe = link_probe(config, slug)
        resp.context.fields = PROBE_FIELDS.new(
            slug=slug, offer_id=link.offer, partner_id=config.offers[link.offer].partner,
            affiliate_id=link.affiliate, redirect_url=probe.redirect_url)
        resp.context.result = "probe" if probe.active else "offer_inactive"
        resp.status = 302
        resp.location = probe.redirect_url


class EarnClickResource:
    """POST /api/v1/earn/products/{product_id}/click (seed 000)."""

    kind = "click"

    route = "/api/v1/earn/products/{product_id}/click"

    def __init__(self, receiver: Receiver, recorder: RequestRecorder):
        self.receiver = receiver
        self.recorder = recorder

    def on_post(self, req: falcon.Request, resp: falcon.Response, product_id: str) -> None:
        resp.context.kind, resp.context.route = "click", self.route
        config = self.receiver.config
        auth = req.get_header("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refusal("token_required", "send Authorization: Bearer <token>",
                          fields=CLICK_FIELDS.partial(product_id=product_id))
        user = config.user_for_token(token.strip())
        if user is None:
            raise Refusal("invalid_token", "this bearer token belongs to no user",
                          fields=CLICK_FIELDS.partial(product_id=product_id))
        product = config.products.get(product_id)
        if product is None:
            raise Refusal("product_not_found", f"no product {product_id!r}",
                          fields=CLICK_FIELDS.partial(product_id=product_id, user_id=user.id))
        try:
            body = parse_body(req.context.content, req.content_type or falcon.MEDIA_JSON)
        except ParamError as exc:
            raise Refusal(exc.code, str(exc), fields=CLICK_FIELDS.partial(product_id=product_id, user_id=user.id)) from None
        task_url = body.pop("taskUrl", None)
        made = earn_click(config, product, user.id, task_url, self.receiver.new_click_id(), req.context.received_at)
        resp.context.fields, resp.context.result, resp.context.custom_data = made.fields, "click", custom_data(body)
        answer(resp, 201, {
            "clickId": made.click.click_id,
            "redirectUrl": made.redirect_url,
            "expiresAt": format_utc(made.click.expires_at, micros=False),
        })
        self.recorder.commit(req, resp)
        self.receiver.clicks.add(made.click)


class EarnTrackResource:
    """GET /api/v1/earn/track/{click_id}: an analytics event for a known click (seed 000)."""

    kind = "track"

    route = "/api/v1/earn/track/{click_id}"

    def __init__(self, receiver: Receiver):
        self.receiver = receiver

    def on_get(self, req: falcon.Request, resp: falcon.Response, click_id: str) -> None:
        resp.context.kind, resp.context.route = "track", self.route
        click = self.receiver.clicks.get(click_id)
        resp.context.custom_data = custom_data(merge_params(parse_query(req.query_string), {}))
        if click is None:
            raise Refusal("click_not_found", "no click with this id", fields=TRACK_FIELDS.partial(click_id=click_id))
        resp.context.fields = TRACK_FIELDS.new(
            click_id=click_id, offer_id=click.offer_id, partner_id=click.partner_id, user_id=click.user_id,
            product_id=click.product_id, affiliate_id=click.affiliate_id)
        resp.context.result = "tracked"
        resp.status = 204

    on_head = on_get


class PostbackResource:
    """Every postback dialect: parameters from query, form or JSON body alike."""

    kind = "postback"

    def __init__(self, receiver: Receiver, recorder: RequestRecorder, route: str):
        self.receiver = receiver
        self.recorder = recorder
        self.route = route
        self.dialect = DIALECTS[route]

    def on_get(self, req: falcon.Request, resp: falcon.Response, key: str | None = None) -> None:
        resp.context.kind, resp.context.route = "postback", self.route
        receiver = self.receiver
        config = receiver.config
        env = req.env  # headers straight from the WSGI environ: get_header costs more than it gives here
        client_ip = config.client_ip(req.remote_addr, env.get("HTTP_X_FORWARDED_FOR"))
        # The key in the path chooses a partner's profile before any parameter is read.
        partner = config.partner_for_key(key) if key else None
        profile = partner.profile if partner is not None else None
        dialect = PROFILE_DIALECT if profile is not None else self.dialect
        if profile is not None:
            resp.context.answers, resp.context.answer_params = profile.answers, {}
        try:
            body_params = parse_body(req.context.content, req.content_type)
        except ParamError as exc:
            raise Refusal(exc.code, str(exc),
                          fields=POSTBACK_FIELDS.partial(dialect=dialect, client_ip=client_ip)) from None
        params = merge_params(parse_query(req.query_string), body_params)
        signature = env.get("HTTP_X_SIGNATURE")
        signed = SignedRequest({})
        if profile is not None:
            resp.context.answer_params = params
            signed = profile_signed_request(req, params, config.public_url)
        data = PostbackInput(
            dialect, params, env.get("HTTP_X_API_KEY"), key, client_ip=client_ip,
            signature=signature, timestamp=env.get("HTTP_X_TIMESTAMP"),
            # Only a signature is checked against these bytes: build them only for one.
            signed_request=request_part(req.method, _request_line_path(env), _wsgi_text(req.query_string),
                                        req.context.body) if signature else b"",
            partner=partner if profile is not None else None, signed=signed,
        )
        decision = decide_postback(data, config, receiver.clicks, req.context.received_at)
        resp.context.fields, resp.context.custom_data = decision.fields, decision.custom_data
        if decision.result == "test":
            resp.context.result = "test"
            answer_success(resp, "test")
            return
        # The key stays locked from the duplicate check until the record is durable.
        with receiver.conversions.claim(decision.key):
            recorded = receiver.conversions.is_recorded(decision.key)
            if decision.reversal and not recorded:
                raise Refusal("reversal_original_not_found",
                              f"this reversal takes back transaction {decision.key[1]!r} of click "
                              f"{decision.key[0]!r}, which has no conversion (yet)",
                              fields=decision.fields, custom_data=decision.custom_data)
            result = "duplicate" if recorded else "recorded"
            resp.context.result = result
            answer_success(resp, result)
            self.recorder.commit(req, resp)
            if result == "recorded":
                receiver.conversions.add(decision.key, decision.fields["status"])

    on_post = on_head = on_get


class HealthResource:
    """GET /healthz: 200 when this request's own record reached the disk, 503 when it could not."""

    kind = "health"

    def __init__(self, receiver: Receiver, route: str):
        self.receiver = receiver
        self.route = route

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.context.kind, resp.context.route, resp.context.result = "health", self.route, "ok"
        receiver = self.receiver
        receiver.config_store.current()  # re-read a changed config.toml, so config_error is current
        answer(resp, 200, {
            "ok": True,
            "log": "writable",
            "clicks": len(receiver.clicks),
            "conversions": len(receiver.conversions),
            "config_error": receiver.config_store.error,
            "unlogged_requests": receiver.unlogged.snapshot(),
        })

    on_head = on_get


class OpenAPIResource:
    """GET /openapi.json: the OpenAPI document (logged like any request, kind "other")."""

    kind = "other"

    route = OPENAPI_PATH

    def __init__(self) -> None:
        self.document = document_bytes()  # built once: it depends on code, never on config

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.context.kind, resp.context.route, resp.context.result = "other", self.route, "ok"
        resp.status = 200
        resp.data = self.document
        resp.content_type = falcon.MEDIA_JSON

    on_head = on_get


def unrouted(req: falcon.Request, resp: falcon.Response, **_: Any) -> None:
    """Any other path: 404, but the record keeps its parameters (a postback sent to the wrong URL)."""
    resp.context.kind = "unrouted"
    if req.context.get("content", b"") is None:
        decoded_content(req, req.context.max_body_bytes)
    params = merge_params(parse_query(req.query_string), _safe_body_params(req))
    resp.context.custom_data = custom_data(params)
    resp.context.fields = ANY_RECORD_FIELDS.partial(click_id=find_click_id(params))
    raise Refusal("not_found", "no such endpoint: postbacks go to /api/postback (see docs/endpoints.md)",
                  fields=resp.context.fields, custom_data=resp.context.custom_data)


def profile_signed_request(req: falcon.Request, params: dict[str, Any], public_url: str) -> SignedRequest:
    """What a platform's signature covers (receiver.signatures): the query and path as sent, the
    addresses the platform may have called (our public_url, and the Host it sent), the headers."""
    env = req.env
    host = env.get("HTTP_HOST")
    bases = [public_url.rstrip("/")]
    if host:
        bases += [f"{env.get('wsgi.url_scheme', 'http')}://{host}", f"https://{host}"]
    headers = {name: value for name in SIGNATURE_HEADERS
               if (value := env.get("HTTP_" + name.upper().replace("-", "_"))) is not None}
    return SignedRequest(params, _wsgi_text(req.query_string), _request_line_path(env), tuple(bases), headers)


def answer_templated(resp: falcon.Response, template: Answer, status: int, params: dict[str, Any],
                     error: str | None = None) -> None:
    """An answer made from a profile's template; the log records its body (answer_body)."""
    resp.status = template.status or status
    body = template.render(params, error)
    resp.data = body.encode("utf-8")
    resp.content_type = template.content_type
    resp.context.answer_body = body


def answer_success(resp: falcon.Response, result: str) -> None:
    """200 {"ok": true, "result": ...}, or the profile's success answer."""
    answers = resp.context.get("answers")
    if answers is not None and answers.success is not None and answers.success.body is not None:
        answer_templated(resp, answers.success, 200, resp.context.answer_params)
        return
    success = answers.success if answers is not None else None
    answer(resp, success.status if success is not None and success.status else 200, {"ok": True, "result": result})


def _wsgi_text(value: str) -> str:
    """A WSGI string (latin-1 of the bytes received) as the UTF-8 text the sender wrote."""
    return value.encode("latin-1", "replace").decode("utf-8", "surrogateescape")


def _request_line_path(env: dict[str, Any]) -> str:
    """The path as the sender wrote it (still percent-encoded), which is what a signature covers.

    waitress keeps the request target as REQUEST_URI; a server without it (Falcon's test
    client) gives only the decoded PATH_INFO, which is the same text for a plain path.
    """
    target = env.get("REQUEST_URI")
    if not target:
        return _wsgi_text(env.get("PATH_INFO", ""))
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:  # absolute-form request target: http://host/path
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return _wsgi_text(path)


def decoded_content(req: falcon.Request, limit: int) -> bytes:
    """The body with its Content-Encoding undone (at most `limit` bytes decoded), kept in
    req.context.content; a body that does not decode, or decodes too large, is refused."""
    try:
        req.context.content = decode_body(req.context.body, req.env.get("HTTP_CONTENT_ENCODING"), limit)
    except ParamError as exc:
        raise Refusal(exc.code, str(exc)) from None
    return req.context.content


def _safe_body_params(req: falcon.Request) -> dict[str, Any]:
    content = req.context.get("content", b"")
    if content is None:  # refused before its Content-Encoding was undone: its parameters are unknown
        return {}
    try:
        return parse_body(content, req.content_type)
    except ParamError:
        return {}


def _refused(req: falcon.Request, resp: falcon.Response, exc: Refusal, params: Any) -> None:
    resp.context.error = exc.code
    if exc.fields is not None:
        resp.context.fields = exc.fields
    if exc.custom_data is not None:
        resp.context.custom_data = exc.custom_data
    answers = resp.context.get("answers")
    # A profile answers a refusal as its platform expects; a transient failure (5xx) keeps its
    # status, so the platform retries.
    template = answers.for_refusal(is_permanent(exc.code)) if answers is not None and exc.http_status < 500 \
        else None
    if template is not None and template.body is not None:
        answer_templated(resp, template, exc.http_status, resp.context.answer_params, exc.code)
        return
    status = template.status if template is not None and template.status else exc.http_status
    answer(resp, status, {"ok": False, "error": exc.code, "message": exc.message})
    if exc.code == "overloaded":
        resp.set_header("Retry-After", "1")


def _http_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError, params: Any) -> None:
    code = code_for_status(exc.status_code)
    resp.context.error = code
    answer(resp, exc.status_code, {"ok": False, "error": code, "message": exc.title or code})
    for name, value in (exc.headers or {}).items():
        resp.set_header(name, value)


def answer_log_unavailable(resp: falcon.Response, exc: LogWriteError) -> None:
    """The answer to a request whose record could not be made durable: 503, never a 2xx."""
    log.error("answering 503: %s", exc)
    resp.context.result, resp.context.error = None, "log_unavailable"
    resp.context.answer_body = None  # a profile's templated answer was not sent after all
    resp.location = None  # a 503 click must not redirect as if it had been recorded
    answer(resp, HTTP_STATUS["log_unavailable"], {"ok": False, "error": "log_unavailable"})


def _log_unavailable(req: falcon.Request, resp: falcon.Response, exc: LogWriteError, params: Any) -> None:
    answer_log_unavailable(resp, exc)


def _unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any) -> None:
    log.exception("unexpected error on %s %s", req.method, req.path)
    resp.context.error = "internal_error"
    answer(resp, 500, {"ok": False, "error": "internal_error"})


class ReceiverApp(falcon.App):
    """A Falcon app that also holds its Receiver, so the server and tests can close the log."""

    receiver: Receiver


def create_app(
    settings: Settings | str | Path,
    *,
    clock: Callable[[], datetime] = utc_now,
    new_click_id: Callable[[], str] = new_uuid,
    new_event_id: Callable[[], str] = new_uuid,
    writer: SegmentWriter | None = None,
    queue_depth: Callable[[], int] | None = None,
) -> ReceiverApp:
    """The receiver over DATA (its config.toml and log/); `app.receiver.close()` releases the log."""
    if not isinstance(settings, Settings):
        settings = Settings(Path(settings))
    receiver = Receiver(settings, writer, clock, new_click_id, new_event_id, queue_depth)
    recorder = RequestRecorder(receiver)
    app = ReceiverApp(middleware=[RequestCounter(receiver.metrics), recorder])
    app.req_options.strip_url_path_trailing_slash = True
    app.add_route(LinkClickResource.route, LinkClickResource(receiver, recorder))
    app.add_route(EarnClickResource.route, EarnClickResource(receiver, recorder))
    app.add_route(EarnTrackResource.route, EarnTrackResource(receiver))
    for route in DIALECTS:
        app.add_route(route, PostbackResource(receiver, recorder, route))
    # seed 001's "check system status" URL answers like /healthz
    for route in ("/healthz", "/api/analytics/postback/test"):
        app.add_route(route, HealthResource(receiver, route))
    app.add_route(OpenAPIResource.route, OpenAPIResource())
    app.add_route(MetricsResource.route, MetricsResource(receiver))
    app.add_sink(unrouted, "/")
    # Registered most generic first: Falcon picks the most specific handler.
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(LogWriteError, _log_unavailable)
    app.add_error_handler(Refusal, _refused)
    app.receiver = receiver
    return app


__all__ = ["Receiver", "ReceiverApp", "Settings", "create_app"]
