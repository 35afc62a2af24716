"""Sending postbacks in tests: each seed dialect's minimal accepted postback, the ways of
carrying its parameters, and multipart/form-data bodies."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode


def send(h, path: str, params: dict[str, Any], style: str = "query", headers: dict[str, str] | None = None):
    """One postback with `params` carried the way `style` says."""
    if style == "query":
        return h.get(path, query_string=urlencode(params), headers=headers)
    if style == "post_query":
        return h.post(path, query_string=urlencode(params), headers=headers)
    if style == "form":
        return h.post(path, body=urlencode(params), content_type="application/x-www-form-urlencoded",
                      headers=headers)
    if style == "json":
        return h.post(path, json=params, headers=headers)
    raise AssertionError(style)


def dialect_setup(h, dialect: str) -> tuple[str, dict[str, Any], str]:
    """(path, minimal params, click id) of an accepted postback in this dialect."""
    if dialect == "network":  # seed 003
        cid = h.link_click("alpha-1")
        return "/api/postback", {"api_key": "key-alpha", "click_id": cid}, cid
    if dialect == "publisher":  # seed 001: key in the path
        cid = h.link_click("beta-1")
        return "/postback/key-beta", {"click_id": cid}, cid
    if dialect == "peerclick":  # seed 002
        cid = h.link_click("open-1")
        return "/postback", {"cid": cid}, cid
    if dialect == "advertiser":  # seed 004
        cid = h.link_click("camp-a")
        return "/postback/advertiser", {"campaign_id": "camp-1", "click_id": cid}, cid
    if dialect == "earn":  # seed 000
        cid = h.earn_click("p1")
        return "/api/v1/earn/postback", {"click_id": cid}, cid
    raise AssertionError(dialect)


DIALECT_ROUTES = {
    "network": "/api/postback",
    "publisher": "/postback/{key}",
    "peerclick": "/postback",
    "advertiser": "/postback/advertiser",
    "earn": "/api/v1/earn/postback",
}


def multipart(fields: list[tuple[str, str | bytes]], boundary: str = "b0undary-x",
              part_headers: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body of text fields (body, Content-Type)."""
    out = b""
    for name, value in fields:
        raw = value if isinstance(value, bytes) else value.encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (part_headers or {}).items())
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n{extra}\r\n").encode()
        out += raw + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
