"""One error shape for every JSON API: `{"error": "<code>", "detail": "<text>"}`.

Field problems add `"errors": [{"field", "error"}]`. DESIGN.md fixes this contract; third-party
agents parse `error`, people read `detail`.
"""

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

_DEFAULT_CODES = {
    exceptions.ParseError: "invalid_json",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ValidationError: "validation_failed",
}


class ApiError(exceptions.APIException):
    """An API failure with our own code: `raise ApiError(400, "unknown_gpu", "…")`."""

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: str,
        errors: list | None = None,
        headers: dict | None = None,
    ):
        self.status_code = status_code
        self.code = code
        self.errors = errors
        self.headers = headers or {}
        super().__init__(detail=detail, code=code)


class Refused(Exception):
    """A refusal from domain code, free of any web framework; the API turns it into a 4xx."""

    def __init__(self, status: int, code: str, detail: str, errors: list | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors or []
        self.extra: dict = {}  # more fields of the error body, e.g. what a replay may reuse


def error_body(code: str, detail: str, errors: list | None = None) -> dict:
    body = {"error": code, "detail": detail}
    if errors:
        body["errors"] = errors
    return body


def json_error(status_code: int, code: str, detail: str, **extra) -> JsonResponse:
    """The same shape from a plain Django view."""
    return JsonResponse({**error_body(code, detail), **extra}, status=status_code)


def _flatten(detail, prefix: str = "") -> list[dict]:
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            out.extend(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [{"field": prefix or "non_field_errors", "error": str(item)} for item in detail]
        out = []
        for index, item in enumerate(detail):
            out.extend(_flatten(item, f"{prefix}[{index}]"))
        return out
    return [{"field": prefix or "non_field_errors", "error": str(detail)}]


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        exc = ApiError(413, "body_too_large", "The request body is too large.")
    extra = {}
    if isinstance(exc, Refused):
        extra = exc.extra
        exc = ApiError(exc.status, exc.code, exc.detail, exc.errors)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        body = {**error_body(exc.code, str(exc.detail), exc.errors), **extra}
    elif isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        body = error_body("validation_failed", "The request body has invalid fields.", errors)
    else:
        code = next(
            (c for cls, c in _DEFAULT_CODES.items() if isinstance(exc, cls)), "request_failed"
        )
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        body = error_body(code, str(detail))
    if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS and "Retry-After" not in response:
        response["Retry-After"] = "60"
    headers = dict(response.items())
    headers.update(getattr(exc, "headers", None) or {})
    return Response(body, status=response.status_code, headers=headers)
