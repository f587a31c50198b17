"""Reading JSON request bodies with a size cap, answering in the API's error shape."""

import json
import re

from portal.api_errors import ApiError

# JSON may escape UTF-16 surrogates; Python keeps a lone one, which no database can store.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_json_object(request, max_bytes: int, too_large_code: str = "body_too_large") -> dict:
    """The body as a JSON object, or an ApiError: 413 past `max_bytes`, 400 if not an object."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    try:
        declared_len = int(declared)
    except ValueError:
        raise ApiError(400, "invalid_request", "Content-Length is not a number.") from None
    if declared_len > max_bytes:
        raise ApiError(413, too_large_code, f"The body is larger than {max_bytes} bytes.")
    # Read from Django's request (DRF wraps it) with a cap, so a body without Content-Length
    # cannot make us buffer more than we accept.
    django_request = getattr(request, "_request", request)
    raw = django_request.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ApiError(413, too_large_code, f"The body is larger than {max_bytes} bytes.")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
    if b"\\u0000" in raw:
        # PostgreSQL text cannot hold NUL; refusing it here keeps both databases alike.
        raise ApiError(400, "invalid_json", "The body holds a NUL character (\\u0000).")
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(body):
        raise ApiError(
            400, "invalid_json", "The body holds a lone UTF-16 surrogate (\\ud800-\\udfff)."
        )
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    return body


def require_strings(body: dict, *names: str) -> list[str]:
    """Each named field as a non-empty string, or a 400 listing every field that is not."""
    errors = [
        {"field": name, "error": "required" if name not in body else "must be a non-empty string"}
        for name in names
        if not isinstance(body.get(name), str) or not body.get(name)
    ]
    if errors:
        raise ApiError(400, "validation_failed", "Some fields are missing or invalid.", errors)
    return [body[name] for name in names]
