"""The receiver's OpenAPI 3.0 document, built from the same tables the app uses.

Error codes per answer come from `receiver.errors.HTTP_STATUS` and parameter names from
`receiver.params`, so the document cannot drift from the code silently: the repo keeps
`docs/openapi.json` (regenerate with `python -m receiver.openapi docs/openapi.json`), the
app serves this document at GET /openapi.json, and tests compare the two and run
schemathesis against a live receiver.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from receiver.contract.codes import HTTP_STATUS
from receiver.contract.params import BASE_VOCABULARY, CAMPAIGN_ID, DIALECTS
from receiver.contract.profiles import preset_names

OPENAPI_PATH = "/openapi.json"
METRICS_PATH = "/metrics"
DOCUMENT_FILE = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"

# Codes any route can answer: an unroutable path parameter, a broken request, an oversized
# body (also once decoded), a Content-Encoding we do not decode, a log that cannot be written,
# and what the HTTP server refuses before any route (receiver.http_errors).
COMMON_CODES = ("bad_request", "not_found", "body_too_large", "unsupported_content_encoding", "log_unavailable",
                "invalid_request_line", "invalid_header", "invalid_content_length", "invalid_chunked_body",
                "headers_too_large", "transfer_encoding_not_supported")
BODY_DESCRIPTION = (
    "Read as a form (`application/x-www-form-urlencoded`), JSON (`application/json`, `*+json`), "
    "`text/plain` holding a query string or a JSON object, or `multipart/form-data` text fields (a part "
    "with a filename is an upload, not a parameter), in the charset the Content-Type names (UTF-8 by "
    "default). A body sent with `Content-Encoding: gzip` or `deflate` is decoded first, to at most 1 MiB "
    "(more is 413 `body_too_large`; another coding is 415 `unsupported_content_encoding`). JSON numbers "
    "are read exactly as sent: an id or amount gets their very digits, never a rounded float."
)
# Every postback route shares one decision (and "/postback/{key}" with key "advertiser"
# is ClickWall's route), so each answers every postback code.
POSTBACK_CODES = (
    "click_id_required",
    "api_key_required",
    "invalid_api_key",
    "ip_not_allowed",
    "signature_required",
    "invalid_signature",
    "signature_expired",
    "campaign_id_required",
    "campaign_mismatch",
    "click_not_found",
    "click_expired",
    "reversal_original_not_found",
    "unsubstituted_macro",
    "invalid_amount",
    "invalid_commission",
    "invalid_currency",
    "invalid_body",
)
POSTBACK_HEADERS = {
    "X-API-Key": "the partner's api key (the path key and this header win over api_key)",
    "X-Signature": "sha256=<hex HMAC-SHA256>, for partners with a signing_secret (docs/endpoints.md)",
    "X-Timestamp": "unix seconds the signature was made at; must be within 300 s of our clock",
    "X-Forwarded-For": "the client address, believed only from a trusted_proxies peer",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_responses(codes: tuple[str, ...]) -> dict[str, Any]:
    """One response per HTTP status, its `error` enumerating exactly the codes that map to it."""
    by_status: dict[int, list[str]] = {}
    for code in (*codes, *COMMON_CODES):
        by_status.setdefault(HTTP_STATUS[code], []).append(code)
    responses = {}
    for status, names in sorted(by_status.items()):
        schema = {
            "allOf": [_ref("Error"), {"type": "object", "properties": {"error": {"enum": names}}}]
        }
        responses[str(status)] = _json(schema, "refused: " + ", ".join(names))
    return responses


def _param(name: str, where: str, description: str = "", required: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "in": where,
        "required": required,
        "schema": {"type": "string"},
    }
    if description:
        out["description"] = description
    return out


def _param_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def shared_parameters() -> dict[str, Any]:
    """The postback parameters, defined once and referenced by all ten postback operations."""
    shared = {name: _param(name, "query", text) for name, text in postback_names("advertiser")}
    shared.update({name: _param(name, "header", text) for name, text in POSTBACK_HEADERS.items()})
    return shared


def postback_names(dialect: str) -> list[tuple[str, str]]:
    """(parameter name, what it is) of every recognised alias, in priority order."""
    vocabulary = dict(BASE_VOCABULARY)
    if dialect == "advertiser":
        vocabulary["campaign_id"] = CAMPAIGN_ID
    return [
        (alias, f"{field} (alias {i + 1} of {len(aliases)}; first present wins)")
        for field, aliases in vocabulary.items()
        for i, alias in enumerate(aliases)
    ]


def shared_responses() -> dict[str, Any]:
    """The postback answers, defined once: every postback route shares one decision."""
    shared = {"PostbackAccepted": _json(_ref("PostbackResult"), "accepted")}
    shared.update(
        {
            f"PostbackRefused{status}": response
            for status, response in error_responses(POSTBACK_CODES).items()
        }
    )
    return shared


def postback_operation(route: str, method: str) -> dict[str, Any]:
    dialect = DIALECTS[route]
    names = postback_names(dialect)
    params: list[dict[str, Any]] = [_param_ref(name) for name, _ in names]
    params += [_param_ref(name) for name in POSTBACK_HEADERS]
    description = ("Parameters are read alike from the query and from the body (the query wins a "
                   "name both carry); every other parameter is kept as custom_data. A name sent more than "
                   "once is read by its first value, and every value is kept in custom_data as a list. A "
                   "HEAD is answered like the GET, without a body (and recorded like it). " + BODY_DESCRIPTION)
    if "{key}" in route:
        params.append(_param("key", "path", "the partner's api key (seed 001)", required=True))
        description += (" For a partner with a profile in config.toml (a platform preset: "
                        f"{', '.join(preset_names())}; or its own [partners.params]), this is its own URL: the key "
                        "chooses the profile, which names the parameters, maps the statuses, checks the "
                        "platform's signature and answers as the platform expects (docs/configuration.md, "
                        "Partner profiles, and docs/integrations.md); the names listed here are the seed 001 dialect's.")
    operation: dict[str, Any] = {
        "operationId": f"postback_{dialect}_{method}",
        "tags": ["postbacks"],
        "summary": f"{dialect} postback dialect",
        "description": description,
        "parameters": params,
        "responses": {
            "200": {"$ref": "#/components/responses/PostbackAccepted"},
            **{
                status: {"$ref": f"#/components/responses/PostbackRefused{status}"}
                for status in error_responses(POSTBACK_CODES)
            },
        },
    }
    if method == "post":
        form = {
            "type": "object",
            "properties": {name: {"type": "string"} for name, _ in names},
            "additionalProperties": {"type": "string"},
        }
        body = {
            "type": "object",
            "properties": {name: {"description": text} for name, text in names},
            "additionalProperties": True,
        }
        operation["requestBody"] = {
            "required": False,
            "description": BODY_DESCRIPTION,
            "content": {
                "application/json": {"schema": body},
                "application/x-www-form-urlencoded": {"schema": form},
                "multipart/form-data": {"schema": form},
                "text/plain": {"schema": {"type": "string", "description": "a query string (cid=...&payout=...) "
                                                                            "or a JSON object"}},
            },
        }
    return operation


def head_of(operation: dict[str, Any], operation_id: str, summary: str) -> dict[str, Any]:
    """The HEAD of a GET operation: the same parameters and statuses, answered without a body."""
    return {**operation, "operationId": operation_id, "summary": summary}


def click_operations() -> dict[str, Any]:
    link = {
        "get": {
            "operationId": "link_click",
            "tags": ["clicks"],
            "summary": "tracking link (seed 003): records a click and redirects to the offer",
            "parameters": [
                _param("slug", "path", required=True),
                *[_param(f"sub{n}", "query", "kept as custom_data") for n in range(1, 6)],
            ],
            "responses": {
                "302": {
                    "description": "to the offer URL (the homepage when the offer is inactive)",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
                **error_responses(("link_not_found",)),
            },
        },
    }
    earn = {
        "post": {
            "operationId": "earn_click",
            "tags": ["clicks"],
            "summary": "earn-app task click (seed 000)",
            "security": [{"bearer": []}],
            "parameters": [_param("product_id", "path", required=True)],
            "requestBody": {
                "required": False,
                "description": BODY_DESCRIPTION,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"taskUrl": {"type": "string"}},
                            "additionalProperties": True,
                        }
                    }
                },
            },
            "responses": {
                "201": _json(_ref("EarnClick"), "click recorded"),
                **error_responses(
                    (
                        "token_required",
                        "invalid_token",
                        "product_not_found",
                        "invalid_task_url",
                        "invalid_body",
                    )
                ),
            },
        },
    }
    link["head"] = head_of(link["get"], "link_probe", "tracking link checked with HEAD (a link checker): the "
                           "redirect a GET would give, but no click is made")
    link["head"]["description"] = (
        "Answered with the GET's status and a Location to the offer URL with our parameters but no "
        "click id: no click is made, so no click id exists that could ever convert. Logged as a "
        "record of kind `probe`.")
    link["head"]["responses"] = {
        **link["get"]["responses"],
        "302": {
            "description": "to the offer URL without a click id (the homepage when the offer is inactive)",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
    }
    track = {
        "get": {
            "operationId": "earn_track",
            "tags": ["clicks"],
            "summary": "earn-app track event (seed 000)",
            "parameters": [_param("click_id", "path", required=True)],
            "responses": {
                "204": {"description": "tracked"},
                **error_responses(("click_not_found",)),
            },
        },
    }
    track["head"] = head_of(track["get"], "earn_track_head", "earn-app track event, as HEAD (recorded as the GET)")
    return {
        "/t/{slug}": link,
        "/api/v1/earn/products/{product_id}/click": earn,
        "/api/v1/earn/track/{click_id}": track,
    }


def other_operations() -> dict[str, Any]:
    health = {
        "200": _json(_ref("Health"), "this request's own record reached the disk"),
        **error_responses(()),
    }
    operations = {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "tags": ["other"],
                "summary": "health",
                "responses": health,
            }
        },
        "/api/analytics/postback/test": {
            "get": {
                "operationId": "postback_status_check",
                "tags": ["other"],
                "summary": "seed 001's check-system-status URL: same as /healthz",
                "responses": health,
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "openapi",
                "tags": ["other"],
                "summary": "this document",
                "responses": {
                    "200": _json({"type": "object"}, "the OpenAPI document"),
                    **error_responses(()),
                },
            }
        },
    }
    for item in operations.values():
        get = item["get"]
        item["head"] = head_of(get, f"{get['operationId']}_head", f"{get['summary']} (HEAD: no body)")
    operations[METRICS_PATH] = {
        "get": {
            "operationId": "metrics",
            "tags": ["other"],
            "summary": "Prometheus metrics (text format); only for the config's metrics_allowed_ips "
                       "(default: this machine); not logged",
            "responses": {
                "200": {"description": "the metrics, in the Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}}},
                "403": _json(_ref("Error"), "ip_not_allowed: this client is not within metrics_allowed_ips"),
            },
        }
    }
    return operations


def schemas() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "required": ["ok", "error"],
            "properties": {
                "ok": {"enum": [False]},
                "error": {"type": "string", "enum": sorted(HTTP_STATUS)},
                "message": {"type": "string"},
            },
        },
        "PostbackResult": {
            "type": "object",
            "required": ["ok", "result"],
            "additionalProperties": False,
            "properties": {
                "ok": {"enum": [True]},
                "result": {"enum": ["recorded", "duplicate", "test"]},
            },
        },
        "EarnClick": {
            "type": "object",
            "required": ["clickId", "redirectUrl", "expiresAt"],
            "additionalProperties": False,
            "properties": {
                "clickId": {"type": "string", "format": "uuid"},
                "redirectUrl": {"type": "string"},
                "expiresAt": {"type": "string", "format": "date-time"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["ok", "log", "clicks", "conversions", "config_error", "unlogged_requests"],
            "additionalProperties": False,
            "properties": {
                "ok": {"enum": [True]},
                "log": {"enum": ["writable"]},
                "clicks": {"type": "integer", "minimum": 0},
                "conversions": {"type": "integer", "minimum": 0},
                "config_error": {"type": "string", "nullable": True},
                "unlogged_requests": {
                    "type": "object",
                    "description": "requests that could never become a record, since this process started: "
                    "`incomplete` (the client closed or stalled before sending the whole request) and "
                    "`abandoned` (the client closed the connection before a worker could serve it); "
                    "neither was answered",
                    "required": ["incomplete", "abandoned"],
                    "additionalProperties": False,
                    "properties": {
                        "incomplete": {"type": "integer", "minimum": 0},
                        "abandoned": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    }


def build_document() -> dict[str, Any]:
    """The whole document; deterministic, so the repo's copy can be compared byte for byte."""
    paths = click_operations()
    for route in DIALECTS:
        paths[route] = {method: postback_operation(route, method) for method in ("get", "post", "head")}
    paths.update(other_operations())
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "clickledger receiver",
            "version": "1",
            "description": "Ad clicks and S2S conversion postbacks. Every request, refused too, "
            "is logged durably before it is answered (see docs/endpoints.md), including what the HTTP "
            "server refuses before any route (a malformed request line or header, a head over 64 KiB: "
            "answered with the same JSON error).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "parameters": shared_parameters(),
            "responses": shared_responses(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def document_bytes() -> bytes:
    return orjson.dumps(build_document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m receiver.openapi [FILE]`: write the document (to docs/openapi.json by default)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else DOCUMENT_FILE
    target.write_bytes(document_bytes())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
