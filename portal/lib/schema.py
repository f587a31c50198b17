"""What every part of the OpenAPI schema (/api/schema/, /api/docs/) shares.

The views read their JSON by hand (`portal.lib.json_bodies`), so drf-spectacular discovers
nothing on its own: each app describes its operations in `<app>/api/schema.py` with small
documentation-only serializers, applied with `extend_schema` on the view methods. Here: the
error shape, the security schemes, the schema class that registers them, and helpers that
write a limit or a list of codes into a description from the constant that enforces it.

DESIGN.md "Agent API (v1)" is the contract; `.ci/schemathesis.sh` fuzzes the live server and
checks every answer against the schema, so a response documented wrong fails CI.
"""

from collections.abc import Iterable

from django.conf import settings
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers

from portal.lib.json_bodies import MAX_JSON_DEPTH

# --- Security schemes -------------------------------------------------------------------------

NODE_SCHEME = "nodeToken"
SCHEDULER_SCHEME = "schedulerToken"
SESSION_SCHEME = "sessionCookie"
CSRF_COOKIE_SCHEME = "csrfCookie"
CSRF_HEADER_SCHEME = "csrfHeader"

SECURITY_SCHEMES = {
    NODE_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "The node token that `POST /api/v1/agent/enroll` returned (shown once).",
    },
    SCHEDULER_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "A service token of scope `scheduler` "
            "(`python manage.py create_service_token --scope scheduler`)."
        ),
    },
    SESSION_SCHEME: {
        "type": "apiKey",
        "in": "cookie",
        "name": settings.SESSION_COOKIE_NAME,
        "description": "The session cookie that `POST /auth/verify` sets.",
    },
    CSRF_COOKIE_SCHEME: {
        "type": "apiKey",
        "in": "cookie",
        "name": settings.CSRF_COOKIE_NAME,
        "description": "The CSRF cookie that `GET /auth/nonce` (or any page) sets.",
    },
    CSRF_HEADER_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRFToken",
        "description": "The CSRF cookie's value, echoed on every unsafe request.",
    },
}

AUTH_NODE = [{NODE_SCHEME: []}]
AUTH_SCHEDULER = [{SCHEDULER_SCHEME: []}]
AUTH_CSRF = [{CSRF_COOKIE_SCHEME: [], CSRF_HEADER_SCHEME: []}]
AUTH_SESSION = [{SESSION_SCHEME: []}]
AUTH_SESSION_CSRF = [{SESSION_SCHEME: [], CSRF_COOKIE_SCHEME: [], CSRF_HEADER_SCHEME: []}]


class ItemByItemListField(serializers.ListField):
    """A list the API checks item by item: an item that is not a valid `child` is refused on
    its own, listed in the answer (`rejected`, `rejected_gpus`), and the rest is kept."""


class PortalSchema(AutoSchema):
    """The DEFAULT_SCHEMA_CLASS: registers the security schemes its operations name in
    `components`, and documents item-by-item lists as taking any item (the shape is what is
    kept)."""

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, ItemByItemListField):
            schema["items"] = {"anyOf": [schema["items"], {}]}
        return schema

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        for requirement in (operation or {}).get("security", []):
            for name in requirement:
                registry.register_on_missing(
                    ResolvedComponent(
                        name=name,
                        type=ResolvedComponent.SECURITY_SCHEMA,
                        object=name,
                        schema=SECURITY_SCHEMES[name],
                    )
                )
        return operation


# --- Descriptions from the constants that enforce them ----------------------------------------


def codes(values: Iterable[str], last: str = "or") -> str:
    """`a`, `b` or `c`: error codes or values as a description lists them."""
    quoted = [f"`{value}`" for value in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} {last} {quoted[-1]}"


def size_text(n_bytes: int) -> str:
    """1048576 -> "1 MiB"."""
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n_bytes % size == 0:
            return f"{n_bytes // size:,} {unit}"
    return f"{n_bytes:,} bytes"


def duration_text(seconds: int) -> str:
    """86400 -> "24 h", 300 -> "5 min"."""
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size:,} {unit}"
    return f"{seconds:,} s"


# --- Shared shapes ----------------------------------------------------------------------------


def enum_field(values, **kwargs) -> serializers.CharField:
    """A string limited to `values`, inlined (no shared enum component to collide by name)."""
    field = serializers.CharField(**kwargs)
    return extend_schema_field({"type": "string", "enum": list(values)})(field)


@extend_schema_field({"type": "object", "additionalProperties": True})
class FreeObjectField(serializers.DictField):
    pass


class FieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="The field at fault, e.g. `gpus[0].uuid`.")
    error = serializers.CharField(help_text="What is wrong with it.")


class ErrorSerializer(serializers.Serializer):
    """Every error answer of the API (DESIGN.md "Agent API (v1)")."""

    error = serializers.CharField(help_text="A stable code that clients branch on.")
    detail = serializers.CharField(help_text="Human text; may change.")
    errors = FieldErrorSerializer(
        many=True, required=False, help_text="Present for field problems."
    )


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


# Bodies are measured before they are parsed (portal/lib/json_bodies.py).
INVALID_JSON = f"`invalid_json` (not JSON, or nested deeper than {MAX_JSON_DEPTH} levels)"

BODY_TOO_LARGE = error("`body_too_large`.")

RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[429],
    description="Seconds to wait before trying again.",
)

WWW_AUTHENTICATE = OpenApiParameter(
    "WWW-Authenticate",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[401],
    description='The scheme to use: `Bearer realm="…"` (RFC 9110).',
)

# Unsafe requests that carry a CSRF cookie are checked by reading the body as DRF parses it: a
# Content-Type other than JSON is refused before the view runs, and malformed JSON is a 400.
UNSUPPORTED_MEDIA_TYPE = error("`unsupported_media_type`: send `application/json`.")

UNAUTHENTICATED = error("`not_authenticated`: no session (sign in first).")
UNAUTHENTICATED_OR_CSRF = error(
    "`not_authenticated`: no session; `permission_denied`: the CSRF check failed."
)
