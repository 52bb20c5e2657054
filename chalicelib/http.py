"""HTTP answers shared by the API handlers: the JSON error shape and CORS.

Every 4xx and 5xx body is ``{"error": {"code", "message", "problems": [{"field",
"rule"}]}}`` so a client can show which field broke which rule.
"""
from __future__ import annotations

import re
from functools import wraps
from typing import Any, Callable, Mapping

from chalice import Response

from chalicelib.errors import FieldProblem, InvalidInput, StorageUnavailable, Unauthorized


def error(status: int, code: str, message: str, problems: list[FieldProblem] | None = None,
          headers: Mapping[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if problems:
        body["error"]["problems"] = [p.as_dict() for p in problems]
    return Response(body=body, status_code=status, headers=dict(headers or {}))


def json_response(body: Any, status: int = 200) -> Response:
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


def cors_headers(origin: str | None, allowed: tuple[str, ...]) -> dict[str, str]:
    """CORS headers for a browser caller from ``origin``, if it is allowed."""
    if not origin or not allowed:
        return {}
    if "*" in allowed:
        allow = "*"
    elif origin in allowed:
        allow = origin
    else:
        return {}
    headers = {
        "Access-Control-Allow-Origin": allow,
        "Access-Control-Allow-Headers": "Authorization,Content-Type",
        "Access-Control-Allow-Methods": "GET,POST,OPTIONS",
        "Access-Control-Max-Age": "600",
    }
    if allow != "*":
        headers["Vary"] = "Origin"
    return headers


class NotFound(Exception):
    def __init__(self, message: str, problem: FieldProblem) -> None:
        super().__init__(message)
        self.problem = problem


def answers_errors(challenge: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Map the domain errors a route may raise to JSON answers.

    ``challenge`` is the WWW-Authenticate value sent with a 401.
    """

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            try:
                return view(*args, **kwargs)
            except Unauthorized as exc:
                return error(401, "unauthorized", str(exc), headers={"WWW-Authenticate": challenge})
            except InvalidInput as exc:
                return error(exc.status, "invalid_request", str(exc), exc.problems)
            except NotFound as exc:
                return error(404, "not_found", str(exc), [exc.problem])
            except StorageUnavailable:
                return error(503, "unavailable", "storage is busy or unreachable; retry the request",
                             headers={"Retry-After": "1"})

        return wrapper

    return decorate


def _media(headers: Mapping[str, str]) -> str:
    return next((v for k, v in headers.items() if k.lower() == "content-type"), "").lower()


def in_error_shape(response: Response) -> Response:
    """Chalice's own error answers (415, 405, an unhandled exception's 500) in
    Nudge's JSON error shape; other responses unchanged. Chalice has already
    logged any traceback. Nudge's own error pages (text/html) pass as they are."""
    if response.status_code < 400 or (isinstance(response.body, dict) and "error" in response.body):
        return response
    if _media(response.headers).startswith("text/html"):
        return response
    if response.status_code >= 500:
        return error(response.status_code, "internal_error",
                     "Nudge could not complete the request; it is safe to retry")
    body = response.body if isinstance(response.body, dict) else {}
    problems = []
    if response.status_code == 415:
        problems = [FieldProblem("Content-Type", "must be application/json or text/plain")]
    code = re.sub(r"(?<!^)(?=[A-Z])", "_", str(body.get("Code", "BadRequest")).removesuffix("Error")).lower()
    return error(response.status_code, code, body.get("Message", "the request was refused"), problems)
