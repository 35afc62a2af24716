"""Domain refusals, and the one table that maps their codes to HTTP statuses.

Request logic raises `Refusal(code, ...)` carrying whatever it had parsed, so the
log record of a refused request is as complete as an accepted one. Only the HTTP
layer (receiver.app) turns a code into a status, through `HTTP_STATUS`.
"""

from __future__ import annotations

from typing import Any

HTTP_STATUS: dict[str, int] = {
    # postbacks (the contract's codes)
    "click_id_required": 400,
    "api_key_required": 401,
    "invalid_api_key": 403,
    "campaign_mismatch": 403,
    # postback authentication beyond the key (partner allowed_ips, signing_secret)
    "ip_not_allowed": 403,
    "signature_required": 401,
    "invalid_signature": 403,
    "signature_expired": 403,
    "click_not_found": 404,
    "click_expired": 410,
    # postback parameters that cannot be used
    "campaign_id_required": 400,
    "invalid_amount": 400,
    "invalid_commission": 400,
    "invalid_currency": 400,
    "invalid_body": 400,
    # clicks
    "link_not_found": 404,
    "token_required": 401,
    "invalid_token": 401,
    "product_not_found": 404,
    "invalid_task_url": 400,
    # any route
    "bad_request": 400,
    "not_found": 404,
    "method_not_allowed": 405,
    "body_too_large": 413,
    "internal_error": 500,
    "log_unavailable": 503,
    "overloaded": 503,
}


class Refusal(Exception):
    """A request we answer with an error code; carries the fields parsed before the refusal."""

    def __init__(self, code: str, message: str = "", *, fields: dict[str, Any] | None = None,
                 custom_data: dict[str, Any] | None = None):
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown error code {code!r}")
        self.code = code
        self.message = message or code.replace("_", " ")
        self.fields = fields
        self.custom_data = custom_data
        super().__init__(f"{code}: {self.message}")

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]
