"""Domain refusals, and how error codes become HTTP answers.

Request logic raises `Refusal(code, ...)` carrying whatever it had parsed, so the
log record of a refused request is as complete as an accepted one. Only the HTTP
layer (receiver.app) turns a code into a status, through the contract's one table
(receiver.contract.codes.HTTP_STATUS); an error Falcon raises itself (a malformed
request, a wrong method) gets its code from the same table, by `code_for_status`.
"""

from __future__ import annotations

from typing import Any

from receiver.contract.codes import HTTP_STATUS

# The codes any route may answer, for errors raised by Falcon itself: the first with the
# error's status names it.
ANY_ROUTE_CODES = ("bad_request", "not_found", "method_not_allowed", "body_too_large")
_CODE_FOR_STATUS = {HTTP_STATUS[code]: code for code in reversed(ANY_ROUTE_CODES)}


def code_for_status(status: int) -> str:
    """The error code of an HTTP error status Falcon raised (a 4xx without a code of its own is
    bad_request, a 5xx internal_error)."""
    return _CODE_FOR_STATUS.get(status, "bad_request" if status < 500 else "internal_error")


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
