"""Requests waitress refuses before the app: each one logged, and answered in JSON.

waitress reads a request's head and body itself, and refuses what is not valid HTTP (a
raw space, control character or non-ASCII byte in the request line, a bad header line, a
head over `max_request_header_size`, an invalid Content-Length, a malformed chunked body,
a body over `max_request_body_size`) without calling the app: its own plain-text page,
and no record. Here its channel is given three small hooks (`install`):

- `RecordingParser` keeps the raw head as received (at most MAX_HEAD_BYTES of it), which
  waitress's parser would otherwise throw away;
- `LoggedErrorTask` replaces waitress's error page: it writes the request's record through
  the receiver's log writer (durable before the answer, like every record), then answers
  `{"ok": false, "error": CODE, "message": ...}` with waitress's status; if the record
  cannot be written, 503 `log_unavailable`, as the app answers then;
- the channel counts the requests that cannot become a record at all (see
  receiver.app.UnloggedCounts, shown in /healthz).

The record is of kind `http_error` (receiver.contract.record.HTTP_ERROR_FIELDS): the
method, path and query recovered from the request line where it has them, the request
line and the header lines escaped (receiver.contract.record.escape_bytes), waitress's own
reason, the usual headers, any click id in the query, and the query's parameters as
custom_data.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError, crack_first_line, split_uri
from waitress.rfc7230 import ONLY_DIGIT_RE
from waitress.task import ErrorTask
from waitress.utilities import (
    InternalServerError,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
    ServerNotImplemented,
)

from receiver.app import Receiver, body_members, write_record
from receiver.contract.codes import HTTP_STATUS
from receiver.contract.params import custom_data, find_click_id, merge_params, parse_query
from receiver.contract.record import HTTP_ERROR_FIELDS, escape_bytes, new_record
from receiver.contract.timeutil import format_utc
from receiver.log import LogWriteError

log = logging.getLogger("clickledger.receiver")

MAX_HEAD_BYTES = 64 * 1024  # what a record keeps of a refused request's head (waitress's own limit)

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A request line as far as it can be read: a method token, then the target (up to " HTTP/x.y").
_LOOSE_REQUEST_LINE = re.compile(rb"(?P<method>[!#$%&'*+\-.^_`|~0-9A-Za-z]+) (?P<target>.*?)(?: HTTP/[0-9]\.[0-9])?",
                                 re.DOTALL)

MESSAGES = {
    "invalid_request_line": "the request line is not valid HTTP: percent-encode spaces, control characters "
                            "and non-ASCII bytes in the URL (é as %C3%A9)",
    "invalid_header": "a header line is not valid HTTP (a bare CR or LF, a NUL, or a space in a header name)",
    "invalid_content_length": "Content-Length must be a number of bytes",
    "invalid_chunked_body": "the chunked request body is malformed",
    "headers_too_large": f"the request line and headers are over {MAX_HEAD_BYTES} bytes: send large "
                         "parameters in a POST body",
    "transfer_encoding_not_supported": "only Transfer-Encoding: chunked is supported",
    "body_too_large": "the request body is over the server's limit",
    "internal_error": "the server failed to answer this request",
}


class RecordingParser(HTTPRequestParser):
    """waitress's request parser, keeping the raw head for the record of a refused request.

    `raw_head` is the head as received, without its final blank line (at most
    MAX_HEAD_BYTES); `head_truncated` says it was longer. An accepted request only pays one
    attribute store: its head is not copied.
    """

    raw_head = b""
    head_truncated = False

    def parse_header(self, header_plus: bytes) -> None:
        self.raw_head = header_plus[:MAX_HEAD_BYTES]
        self.head_truncated = len(header_plus) > MAX_HEAD_BYTES
        super().parse_header(header_plus)

    def received(self, data: bytes) -> int:
        if self.body_rcv is not None or self.completed:
            return super().received(data)
        before = self.header_plus  # the head so far: waitress drops it when it refuses an over-long head
        consumed = super().received(data)
        if isinstance(self.error, RequestHeaderFieldsTooLarge):
            self.raw_head = (before + data)[:MAX_HEAD_BYTES]
            self.head_truncated = True
        return consumed


def error_code(request: HTTPRequestParser) -> str:
    """The error code of a request waitress refused (receiver.contract.codes)."""
    error = request.error
    if isinstance(error, RequestHeaderFieldsTooLarge):
        return "headers_too_large"
    if isinstance(error, RequestEntityTooLarge):
        return "body_too_large"
    if isinstance(error, ServerNotImplemented):
        return "transfer_encoding_not_supported"
    if isinstance(error, InternalServerError):
        return "internal_error"
    body = request.body_rcv
    if body is not None and body.error is error:
        return "invalid_chunked_body"
    head = getattr(request, "raw_head", b"")
    line, crlf, _ = head.partition(b"\r\n")
    if not crlf or not _request_line_is_valid(line):
        return "invalid_request_line"
    length = request.headers.get("CONTENT_LENGTH")
    if length is not None and not request.chunked and not ONLY_DIGIT_RE.match(length.encode("latin-1")):
        return "invalid_content_length"
    return "invalid_header"


def _request_line_is_valid(line: bytes) -> bool:
    """waitress's own request-line rules (its parser checks them only after the headers)."""
    if b"\r" in line or b"\n" in line:
        return False
    try:
        method, uri, _ = crack_first_line(line)
        if not method:
            return False
        split_uri(uri)
    except ParsingError:
        return False
    return True


def _head_headers(head: bytes) -> dict[str, str]:
    """The header lines of a raw head that read as `name: value` (lower-case names, latin-1
    values as WSGI gives them, repeats joined with ", "), however the head was refused."""
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            continue
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def refused_request_record(receiver: Receiver, request: HTTPRequestParser, remote_addr: str | None,
                           code: str, status: int) -> dict[str, Any]:
    """The log record of a request waitress refused with `code` (answered `status`)."""
    head = getattr(request, "raw_head", b"")
    line, crlf, header_lines = head.partition(b"\r\n")
    method = path = query = ""
    loose = _LOOSE_REQUEST_LINE.fullmatch(line)
    if loose is not None:
        method = loose["method"].decode("ascii")
        target, _, raw_query = loose["target"].partition(b"#")[0].partition(b"?")
        if target.startswith((b"http://", b"https://")):  # absolute-form target: keep its path
            target = b"/" + target.split(b"://", 1)[1].partition(b"/")[2]
        path = unquote_to_bytes(target).decode("utf-8", "replace")  # as the app logs a path
        query = raw_query.decode("latin-1")  # as WSGI gives a query string, and the app logs it
    headers = _head_headers(head)
    params = merge_params(parse_query(query), {})
    limit = receiver.settings.max_logged_body_bytes
    received = request.body_rcv.getbuf() if request.body_rcv is not None else None
    body = received.get(limit + 1) if received is not None and len(received) else b""
    declared = request.content_length or (len(received) if received is not None else None)
    body_text, body_encoding, body_bytes, body_truncated = body_members(body, limit, declared)
    return new_record(
        event_id=receiver.new_event_id(),
        received_at=format_utc(receiver.clock()),
        kind="http_error",
        route=None,
        method=method,
        path=path,
        query=query,
        body=body_text,
        body_encoding=body_encoding,
        body_bytes=body_bytes,
        body_truncated=body_truncated,
        content_type=headers.get("content-type"),
        remote_addr=remote_addr,
        forwarded_for=headers.get("x-forwarded-for"),
        user_agent=headers.get("user-agent"),
        referer=headers.get("referer"),
        http_status=status,
        result=None,
        error=code,
        fields={
            **HTTP_ERROR_FIELDS.new(
                server_reason=str(getattr(request.error, "body", request.error))[:1000],
                request_line=escape_bytes(line) if head else None,
                headers=escape_bytes(header_lines),
                head_truncated=bool(getattr(request, "head_truncated", False)),
            ),
            "click_id": find_click_id(params),
        },
        custom_data=custom_data(params),
    )


def log_refused_request(receiver: Receiver, request: HTTPRequestParser, remote_addr: str | None
                        ) -> tuple[int, dict[str, Any]]:
    """Write the record of a request waitress refused; (status, JSON answer) to send.

    The record is durable before this returns; when it cannot be written the answer is
    503 `log_unavailable`, as for any request, and never a claim that it was logged.
    """
    code = error_code(request)
    status = HTTP_STATUS[code]
    try:
        write_record(receiver, refused_request_record(receiver, request, remote_addr, code, status))
    except LogWriteError as exc:
        log.error("answering 503 to a request the server refused (%s): %s", code, exc)
        return HTTP_STATUS["log_unavailable"], {"ok": False, "error": "log_unavailable",
                                                "message": "the receiver could not log this request"}
    return status, {"ok": False, "error": code, "message": MESSAGES[code]}


def channel_class(receiver: Receiver) -> type[HTTPChannel]:
    """waitress's HTTPChannel with the hooks above, writing to `receiver`'s log."""

    class LoggedErrorTask(ErrorTask):
        def execute(self) -> None:
            addr = self.channel.addr
            status, answer = log_refused_request(receiver, self.request, addr[0] if addr else None)
            receiver.metrics.count_request("http_error", status, answer["error"])
            body = orjson.dumps(answer)
            self.status = f"{status} {HTTPStatus(status).phrase}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()  # after a refused head the connection's framing is unknown
            self.content_length = len(body)
            self.write(body)

    class LoggingChannel(HTTPChannel):
        parser_class = RecordingParser
        error_task_class = LoggedErrorTask
        _gone_counted = False

        def service(self) -> None:
            if not self.connected and self.requests:
                # waitress drops queued requests of a client that has closed its connection
                receiver.unlogged.add("abandoned", len(self.requests))
            super().service()

        def handle_close(self) -> None:
            request = self.request
            if (request is not None and not request.completed and not self._gone_counted
                    and (request.headers_finished or request.header_plus.strip())):
                self._gone_counted = True  # a request begun and never finished: nothing to log or answer
                receiver.unlogged.add("incomplete")
            super().handle_close()

    return LoggingChannel


def install(server: Any, receiver: Receiver) -> None:
    """Make a waitress server (from waitress.server.create_server) log and answer the requests
    it refuses itself, through `receiver`."""
    server.channel_class = channel_class(receiver)
