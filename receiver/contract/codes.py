"""The error codes the receiver answers, and their HTTP statuses: a record's `error` member.

A refused request's record keeps its code in `error`; the pipeline turns each code into a
postback_issues reason, and the OpenAPI document lists them. Only the receiver's HTTP layer
turns a code into a status (receiver.errors), through this one table.
"""

from __future__ import annotations

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
    # a profile's reversal naming a conversion that was never recorded
    "reversal_original_not_found": 404,
    # postback parameters that cannot be used
    "unsubstituted_macro": 400,  # a click id or amount that is the tracker's macro, unfilled
    "campaign_id_required": 400,
    "invalid_amount": 400,
    "invalid_commission": 400,
    "invalid_currency": 400,
    "invalid_body": 400,
    "unsupported_content_encoding": 415,
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
    # requests the HTTP server (waitress) refuses before any route reads them (kind "http_error")
    "invalid_request_line": 400,
    "invalid_header": 400,
    "invalid_content_length": 400,
    "invalid_chunked_body": 400,
    "headers_too_large": 431,
    "transfer_encoding_not_supported": 501,
    "internal_error": 500,
    "log_unavailable": 503,
    "overloaded": 503,
}

# The refusals (4xx) a later retry of the same request can turn into a success: a reversal that
# arrived before the conversion it takes back. Every other 4xx is permanent (a profile answers
# it with its `permanent_refusal`); a 5xx (log_unavailable, overloaded, internal_error) is
# transient and keeps its status, so the platform retries.
RETRY_MAY_SUCCEED = frozenset({"reversal_original_not_found"})


def is_permanent(code: str) -> bool:
    """Whether no retry of a request refused with `code` can succeed."""
    return HTTP_STATUS[code] < 500 and code not in RETRY_MAY_SUCCEED
