"""One step at a time: a planned step made into an HTTP request (its click ids filled in),
sent through a client before a deadline, and its answer read into an outcome.

Every client (`clickledger.simulator.clients`: over HTTP, or into the receiver app in
process) has the one `Client.send` interface, so the run loop does not know which it drives.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from clickledger.simulator.steps import CLICK, DIALECT_PATHS, EARN_POSTBACK, Step

TIME_LIMIT = 120.0  # seconds: past it, the rest of the plan is not sent
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class Request:
    """A step's HTTP request; `target` is the path and query, under the client's own prefix."""

    method: str
    target: str
    body: bytes | None
    headers: dict[str, str]

    @property
    def line(self) -> str:
        text = f"{self.method} {self.target}"
        return text if len(text) <= 140 else text[:137] + "..."


class Answer(NamedTuple):
    """What came back: the status, the Location header, the body, and whether the request was
    resent once on a fresh connection."""

    status: int
    location: str | None
    body: bytes
    retried: bool = False


class Client(Protocol):
    """Where requests go. `netloc` is the host the receiver knows itself by (an earn click's
    postback_url on another host is counted as such)."""

    url: str
    netloc: str

    def send(self, request: Request, timeout: float) -> Answer: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Clicked:
    """What a click's answer told us: its id, and (earn) the postback URL to call later."""

    click_id: str
    postback_target: str | None = None
    elsewhere: bool = False


@dataclass(frozen=True)
class Outcome:
    """A sent (or not sent) step and its answer, named as the log names it."""

    step: Step
    request_line: str
    status: int | None  # None: not sent (time limit); 0: no HTTP answer
    code: str
    click: Clicked | None = None
    retried: bool = False


def _garble(click_id: str, mutation: tuple[Any, ...] | None) -> str:
    """Apply a planned typo to a real click id (the plan could not know the id)."""
    if mutation is None:
        return click_id
    if mutation[0] == "change" and click_id:
        pos = mutation[1] % len(click_id)
        char = mutation[2] if mutation[2] != click_id[pos] else ("1" if click_id[pos] == "0" else "0")
        return click_id[:pos] + char + click_id[pos + 1:]
    if mutation[0] == "truncate":
        return click_id[: min(mutation[1], max(len(click_id) - 1, 0))]
    return str(mutation[1])


def _fill(value: Any, click_id: str | None) -> Any:
    return click_id if value == CLICK else value


def resolve(step: Step, clicks: Mapping[int, Clicked]) -> Request | None:
    """The HTTP request of a step, with click ids filled in; None when its click was not made."""
    clicked = clicks.get(step.click_slot) if step.click_slot is not None else None
    if step.click_slot is not None and clicked is None:
        return None
    click_id = _garble(clicked.click_id, step.mutation) if clicked else None
    path = step.path
    if path == EARN_POSTBACK:
        path = clicked.postback_target if clicked and clicked.postback_target else (
            f"{DIALECT_PATHS['earn']}?click_id={quote(click_id or '', safe='')}")
    path = path.replace(CLICK, quote(click_id or "", safe=""))
    query = urlencode([(k, _fill(v, click_id)) for k, v in step.query], quote_via=quote)
    target = path + (("&" if "?" in path else "?") + query if query else "")
    headers = dict(step.headers)
    body = None
    if step.body_format == "json":
        body = json.dumps({k: _fill(v, click_id) for k, v in step.body}).encode()
        headers["Content-Type"] = "application/json"
    elif step.body_format == "form":
        body = urlencode([(k, _fill(v, click_id)) for k, v in step.body]).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return Request(step.method, target, body, headers)


def classify(status: int, location: str | None, body: bytes) -> str:
    """An answer's result or error code, named as the log names it."""
    if 300 <= status < 400:
        query = parse_qs(urlsplit(location or "").query)
        return "click" if query.get("click_id") else "offer_inactive"
    if status == 204:
        return "tracked"
    try:
        data = json.loads(body)
    except ValueError:
        return f"http_{status}"
    if isinstance(data, dict):
        for name in ("result", "error"):
            if isinstance(data.get(name), str):
                return data[name]
        if "clickId" in data:
            return "click"
        if data.get("ok") is True:
            return "ok"
    return f"http_{status}"


class Sender:
    """Sends resolved steps through a client until the deadline; turns each answer into an Outcome."""

    def __init__(self, client: Client, deadline: float):
        self.client = client
        self.deadline = deadline

    def send(self, step: Step, request: Request) -> Outcome:
        left = self.deadline - time.monotonic()
        if left <= 0:
            return Outcome(step, request.line, None, "not_sent")
        try:
            answer = self.client.send(request, min(REQUEST_TIMEOUT, left))
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(step, request.line, 0, f"transport_{type(exc).__name__}")
        code = classify(answer.status, answer.location, answer.body)
        click = self._clicked(step, answer.location, answer.body) if step.creates_click else None
        return Outcome(step, request.line, answer.status, code, click, answer.retried)

    def _clicked(self, step: Step, location: str | None, body: bytes) -> Clicked | None:
        if step.dialect == "link":
            ids = parse_qs(urlsplit(location or "").query).get("click_id")
            return Clicked(ids[0]) if ids else None
        try:
            data = json.loads(body)
            click_id, redirect = str(data["clickId"]), str(data.get("redirectUrl") or "")
        except (ValueError, KeyError, TypeError):
            return None
        postback = parse_qs(urlsplit(redirect).query).get("postback_url")
        if not postback:
            return Clicked(click_id)
        parts = urlsplit(postback[0])
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return Clicked(click_id, target, parts.netloc.lower() != self.client.netloc)


__all__ = ["REQUEST_TIMEOUT", "TIME_LIMIT", "Answer", "Clicked", "Client", "Outcome", "Request",
           "Sender", "classify", "resolve"]
