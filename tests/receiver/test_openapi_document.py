"""The OpenAPI document: the repo's copy, the served one and the app's routes agree."""

from __future__ import annotations

from typing import Any

import falcon
import orjson

from receiver.contract.codes import HTTP_STATUS
from receiver.contract.params import BASE_VOCABULARY
from receiver.openapi import DOCUMENT_FILE, build_document, document_bytes


def registered_routes(app: falcon.App) -> dict[str, set[str]]:
    """{uri template: {lowercase methods with a responder}} of every route added with add_route."""
    routes: dict[str, set[str]] = {}
    stack: list[Any] = list(app._router._roots)  # noqa: SLF001 - Falcon exposes no public listing
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.resource is None:
            continue
        methods = {
            name.lower() for name in node.method_map if hasattr(node.resource, f"on_{name.lower()}")
        }
        routes[node.uri_template] = methods
    return routes


def resolve(document: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """A parameter or response object, following its local $ref."""
    if "$ref" not in item:
        return item
    node: Any = document
    for part in item["$ref"].removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_repo_copy_is_the_built_document() -> None:
    assert DOCUMENT_FILE.read_bytes() == document_bytes(), (
        "docs/openapi.json is stale: run `python -m receiver.openapi`"
    )


def test_served_document_equals_the_file_and_is_logged(harness) -> None:
    ex = harness.get("/openapi.json")
    assert ex.status == 200
    assert ex.resp.headers["content-type"].startswith("application/json")
    assert ex.resp.content == DOCUMENT_FILE.read_bytes()
    assert (ex.record["kind"], ex.record["route"], ex.record["result"]) == (
        "other",
        "/openapi.json",
        "ok",
    )


def test_every_registered_route_and_method_is_documented(harness) -> None:
    document = build_document()
    routes = registered_routes(harness.app)
    assert len(routes) >= 11
    for template, methods in routes.items():
        assert template in document["paths"], template
        assert set(document["paths"][template]) == methods, template
    assert set(document["paths"]) == set(routes)


def test_every_postback_alias_and_error_code_is_documented() -> None:
    document = build_document()
    operation = document["paths"]["/api/postback"]["post"]
    names = {resolve(document, p)["name"] for p in operation["parameters"]}
    assert {alias for aliases in BASE_VOCABULARY.values() for alias in aliases} <= names
    assert {"X-API-Key", "X-Signature", "X-Timestamp"} <= names
    assert set(operation["requestBody"]["content"]) == {
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",  # issue 12: multipart and text bodies are read too
        "text/plain",
    }
    codes = set()
    for status, response in operation["responses"].items():
        schema = resolve(document, response)["content"]["application/json"]["schema"]
        if "allOf" in schema:
            enum = schema["allOf"][1]["properties"]["error"]["enum"]
            assert all(HTTP_STATUS[code] == int(status) for code in enum)
            codes |= set(enum)
    assert {
        "ip_not_allowed",
        "signature_required",
        "invalid_signature",
        "signature_expired",
        "click_id_required",
        "click_expired",
        "unsubstituted_macro",  # issue 12: an unfilled macro in the click id or an amount
    } <= codes
    error_enum = document["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
    assert set(error_enum) == set(HTTP_STATUS)


def test_document_is_valid_json_and_openapi_3() -> None:
    document = orjson.loads(DOCUMENT_FILE.read_bytes())
    assert document["openapi"].startswith("3.")
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (path, method)
            templated = {part[1:-1] for part in path.split("/") if part.startswith("{")}
            parameters = [resolve(document, p) for p in operation.get("parameters", [])]
            in_path = {p["name"] for p in parameters if p["in"] == "path"}
            assert templated == in_path, (path, method)
