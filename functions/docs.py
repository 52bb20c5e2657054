"""GET /openapi.json: the OpenAPI description of the HTTP API, with no credential.

The description is chalicelib/openapi.yaml (packaged with chalicelib), read
once per container. ``servers`` is set per request to the path prefix the API
is reached under (API Gateway's stage, e.g. ``/api``), so a client that loads
the document from its URL calls the routes in the same place.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from chalice import Blueprint, Response

import chalicelib
from chalicelib.http import json_response

docs = Blueprint(__name__)

DESCRIPTION = Path(chalicelib.__file__).resolve().parent / "openapi.yaml"


@lru_cache(maxsize=1)
def description() -> dict[str, Any]:
    """The OpenAPI document as a dict (YAML anchors expanded)."""
    import yaml

    with DESCRIPTION.open(encoding="utf-8") as source:
        return yaml.load(source, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def path_prefix(request_context: Mapping[str, Any]) -> str:
    """The part of the request path before the route (``/api`` behind API
    Gateway's stage; empty when the routes are served at the root)."""
    path = str(request_context.get("path") or "")
    route = str(request_context.get("resourcePath") or "")
    if route and path.endswith(route):
        return path[: len(path) - len(route)].rstrip("/")
    return ""


@docs.route("/openapi.json", methods=["GET"])
def openapi_document() -> Response:
    document = copy.copy(description())
    document["servers"] = [{"url": path_prefix(docs.current_request.context or {}) or "/"}]
    return json_response(document)
