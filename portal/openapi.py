"""The OpenAPI schema of the JSON API (served at /api/schema/, browsed at /api/docs/).

The views read their JSON by hand (`portal.jsonbody`) and have no serializers, so nothing here
can be discovered: this module describes every operation under /auth/ and /api/v1/ with small
documentation-only serializers and attaches the descriptions to the view classes with
drf-spectacular's `extend_schema`, leaving the view modules untouched. `portal.urls` imports it.

DESIGN.md "Agent API (v1)" is the contract; `.ci/schemathesis.sh` fuzzes the live server and
checks every answer against this schema, so a response documented wrong here fails CI.
"""

from django.conf import settings
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers

from contributors import telemetry
from contributors.api import agent
from contributors.api import views as me_views
from portal.jsonbody import MAX_JSON_DEPTH
from rewards.api import views as rewards_views

MAX_SAMPLES_DOC = 1000  # the default of TELEMETRY_MAX_SAMPLES; the setting may differ

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
    """AutoSchema that registers the security schemes its operations name in `components`,
    and documents item-by-item lists as taking any item (the shape is what is kept)."""

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


# Bodies are measured before they are parsed (portal/jsonbody.py).
INVALID_JSON = f"`invalid_json` (not JSON, or nested deeper than {MAX_JSON_DEPTH} levels)"


RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[429],
    description="Seconds to wait before trying again.",
)

# Unsafe requests that carry a CSRF cookie are checked by reading the body as DRF parses it: a
# Content-Type other than JSON is refused before the view runs, and malformed JSON is a 400.
UNSUPPORTED_MEDIA_TYPE = error("`unsupported_media_type`: send `application/json`.")

WWW_AUTHENTICATE = OpenApiParameter(
    "WWW-Authenticate",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[401],
    description='The scheme to use: `Bearer realm="…"` (RFC 9110).',
)

UNAUTHENTICATED = error("`not_authenticated`: no session (sign in first).")
UNAUTHENTICATED_OR_CSRF = error(
    "`not_authenticated`: no session; `permission_denied`: the CSRF check failed."
)


# --- Agents: GPUs, enrollment, telemetry, config -------------------------------------------


class GpuSerializer(serializers.Serializer):
    """A GPU as NVML reports it (DESIGN.md "GPU")."""

    uuid = serializers.CharField(
        max_length=telemetry.MAX_UUID_LEN, help_text="`GPU-…` or `MIG-…`, no spaces."
    )
    name = serializers.CharField(max_length=200)
    memory_total_mib = serializers.IntegerField(min_value=1, max_value=telemetry.MAX_MEMORY_MIB)
    driver_version = serializers.CharField(max_length=50, required=False, allow_null=True)
    pci_bus_id = serializers.CharField(max_length=50, required=False, allow_null=True)
    mig_parent_uuid = serializers.CharField(
        max_length=telemetry.MAX_UUID_LEN,
        required=False,
        allow_null=True,
        help_text="For a MIG instance: its physical GPU's uuid.",
    )


class GpuRejectionSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position in the request's `gpus`.")
    error = serializers.CharField(
        help_text=(
            "`validation_failed`, `implausible_memory` (more memory than its model ships with), "
            "`too_many_gpus` (over MAX_GPUS_PER_NODE) or `gpu_owned_by_other_node`."
        )
    )
    errors = FieldErrorSerializer(many=True, required=False)


class EnrollRequestSerializer(serializers.Serializer):
    enrollment_code = serializers.CharField(help_text="Single use, valid for 1 hour.")
    hostname = serializers.CharField(max_length=255, required=False, allow_blank=True)
    agent_version = serializers.CharField(max_length=50, required=False, allow_blank=True)
    gpus = ItemByItemListField(
        child=GpuSerializer(),
        max_length=telemetry.MAX_INVENTORY,
        required=False,
        help_text="A GPU that is not valid is listed in `rejected_gpus`; the others enroll.",
    )


class EnrollResponseSerializer(serializers.Serializer):
    node_id = serializers.IntegerField()
    node_token = serializers.CharField(help_text="Shown once; send it as a Bearer token.")
    sample_interval_s = serializers.IntegerField()
    report_interval_s = serializers.IntegerField()
    rejected_gpus = GpuRejectionSerializer(
        many=True, required=False, help_text="GPUs of the inventory that were not registered."
    )


class SampleSerializer(serializers.Serializer):
    """One reading of one GPU (DESIGN.md "SAMPLE")."""

    gpu_uuid = serializers.CharField(max_length=telemetry.MAX_UUID_LEN)
    ts = serializers.DateTimeField(help_text="From 24 h ago to 5 min ahead of the portal.")
    utilization_gpu_pct = serializers.FloatField(
        min_value=0, max_value=100, allow_null=True, help_text="Null when the device cannot say."
    )
    memory_used_mib = serializers.IntegerField(min_value=0, max_value=telemetry.MAX_MEMORY_MIB)
    memory_total_mib = serializers.IntegerField(min_value=1, max_value=telemetry.MAX_MEMORY_MIB)
    temperature_c = serializers.FloatField(
        min_value=telemetry.TEMPERATURE_RANGE_C[0],
        max_value=telemetry.TEMPERATURE_RANGE_C[1],
        required=False,
        allow_null=True,
    )
    power_w = serializers.FloatField(
        min_value=telemetry.POWER_RANGE_W[0],
        max_value=telemetry.POWER_RANGE_W[1],
        required=False,
        allow_null=True,
    )
    job_id = serializers.CharField(
        max_length=telemetry.MAX_JOB_ID_LEN, required=False, allow_null=True
    )


class TelemetryBatchSerializer(serializers.Serializer):
    batch_id = serializers.UUIDField(help_text="Idempotency key per node.")
    sent_at = serializers.DateTimeField(help_text="The agent's clock when it sent the batch.")
    gpus = ItemByItemListField(
        child=GpuSerializer(),
        max_length=telemetry.MAX_INVENTORY,
        required=False,
        allow_null=True,
        help_text="Optional inventory update; a GPU that is not valid is in `rejected_gpus`.",
    )
    samples = ItemByItemListField(
        child=SampleSerializer(),
        max_length=MAX_SAMPLES_DOC,
        help_text="A sample that is not valid is refused on its own, in `rejected`.",
    )


class SampleRejectionSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position in the request's `samples`.")
    error = serializers.CharField(
        help_text=(
            "`validation_failed`, `out_of_range`, `timestamp_out_of_window`, `unknown_gpu`, "
            "`gpu_owned_by_other_node`, `memory_used_exceeds_total` or `implausible_telemetry` "
            "(a total, power or utilization no such GPU reports; flags the GPU for review)."
        )
    )


class TelemetryResponseSerializer(serializers.Serializer):
    batch_id = serializers.UUIDField()
    accepted = serializers.IntegerField(min_value=0)
    rejected = SampleRejectionSerializer(many=True)
    rejected_gpus = GpuRejectionSerializer(many=True, required=False)


class ConfigGpuSerializer(serializers.Serializer):
    uuid = serializers.CharField()
    committed_memory_mib = serializers.IntegerField()
    enabled = serializers.BooleanField()


class AgentConfigSerializer(serializers.Serializer):
    node_id = serializers.IntegerField()
    sample_interval_s = serializers.IntegerField()
    report_interval_s = serializers.IntegerField()
    gpus = ConfigGpuSerializer(many=True)


EXAMPLE_GPU = {
    "uuid": "GPU-11111111-2222-3333-4444-555555555555",
    "name": "NVIDIA H100 80GB HBM3",
    "memory_total_mib": 81559,
    "driver_version": "550.54.15",
    "pci_bus_id": "00000000:17:00.0",
}

INVALID_TOKEN = error("`invalid_token`: no Bearer token, or not a valid one.")
TOKEN_REVOKED = error("`token_revoked`: the node's token was revoked or rotated.")

ENROLL = extend_schema(
    operation_id="agent_enroll",
    tags=["agent"],
    summary="Enroll a machine",
    description="Trade a single-use enrollment code for a node and its token.",
    auth=[],
    request=EnrollRequestSerializer,
    parameters=[RETRY_AFTER],
    responses={
        201: OpenApiResponse(
            EnrollResponseSerializer, description="Enrolled; the token is shown once."
        ),
        400: error(
            f"{INVALID_JSON}, `invalid_request`, `validation_failed` (with `errors`) or "
            "`invalid_enrollment_code`."
        ),
        409: error(
            "`enrollment_code_used`, or `too_many_nodes` (the contributor has "
            "MAX_NODES_PER_CONTRIBUTOR machines; the code is not spent)."
        ),
        410: error("`enrollment_code_expired`."),
        413: error("`body_too_large`."),
        429: error("`throttled`: too many enrollments from this client address; see Retry-After."),
    },
    examples=[
        OpenApiExample(
            "enroll",
            request_only=True,
            value={
                "enrollment_code": "the-code-from-the-portal",
                "hostname": "gpu-box-1",
                "agent_version": "1.0.0",
                "gpus": [EXAMPLE_GPU],
            },
        )
    ],
)

TELEMETRY = extend_schema(
    operation_id="agent_telemetry",
    tags=["agent"],
    summary="Report a batch of samples",
    description=(
        "Validated and stored at once, ingested later. Idempotent per (node, `batch_id`): a "
        "replay answers `200` with the first answer's body."
    ),
    auth=AUTH_NODE,
    request=TelemetryBatchSerializer,
    parameters=[RETRY_AFTER, WWW_AUTHENTICATE],
    responses={
        202: OpenApiResponse(TelemetryResponseSerializer, description="A new batch."),
        200: OpenApiResponse(
            TelemetryResponseSerializer, description="A replay: the first answer, unchanged."
        ),
        400: error(f"{INVALID_JSON}, `invalid_request` or `validation_failed` (with `errors`)."),
        401: INVALID_TOKEN,
        403: TOKEN_REVOKED,
        413: error("`batch_too_large`: over 1 MiB, 1,000 samples or 256 GPUs."),
        429: error(
            "`throttled`: too many batches a minute from this node, or too many invalid tokens "
            "from this client address; see Retry-After."
        ),
    },
    examples=[
        OpenApiExample(
            "batch",
            request_only=True,
            value={
                "batch_id": "0b6f8a52-4d0e-4f5e-9a53-0f6a3f0d9c11",
                "sent_at": "2025-01-01T00:00:30Z",
                "gpus": [EXAMPLE_GPU],
                "samples": [
                    {
                        "gpu_uuid": EXAMPLE_GPU["uuid"],
                        "ts": "2025-01-01T00:00:00Z",
                        "utilization_gpu_pct": 87.5,
                        "memory_used_mib": 40000,
                        "memory_total_mib": 81559,
                        "temperature_c": 61.0,
                        "power_w": 512.25,
                        "job_id": "job-1",
                    }
                ],
            },
        )
    ],
)

CONFIG = extend_schema(
    operation_id="agent_config",
    tags=["agent"],
    summary="The node's configuration",
    parameters=[WWW_AUTHENTICATE],
    description="Intervals and, per GPU, the committed memory and whether it is enabled.",
    auth=AUTH_NODE,
    responses={
        200: OpenApiResponse(AgentConfigSerializer, description="The configuration."),
        401: INVALID_TOKEN,
        403: TOKEN_REVOKED,
    },
)

# --- Scheduler --------------------------------------------------------------------------------

JOB_KINDS = ("training", "inference", "other")


class JobRequestSerializer(serializers.Serializer):
    job_id = serializers.CharField(min_length=1, max_length=128)
    gpu_uuid = serializers.CharField(help_text="A registered GPU or MIG instance.")
    kind = enum_field(JOB_KINDS)
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Null (or absent) while the job runs."
    )


class JobSerializer(serializers.Serializer):
    job_id = serializers.CharField()
    gpu_uuid = serializers.CharField()
    kind = enum_field(JOB_KINDS)
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)


SCHEDULER_JOBS = extend_schema(
    operation_id="scheduler_attest_job",
    tags=["scheduler"],
    summary="Attest a job",
    description="`201` for a new job, `200` when the same `job_id` sets or changes its end.",
    auth=AUTH_SCHEDULER,
    request=JobRequestSerializer,
    parameters=[WWW_AUTHENTICATE],
    responses={
        201: OpenApiResponse(JobSerializer, description="A new job."),
        200: OpenApiResponse(JobSerializer, description="The job's end was updated."),
        400: error(
            f"{INVALID_JSON}, `invalid_request`, `validation_failed` (with `errors`) or "
            "`unknown_gpu`."
        ),
        401: error("`invalid_token`: not a valid scheduler token."),
        409: error("`job_conflict`: the job exists with another GPU, kind or start."),
        413: error("`body_too_large`."),
    },
    examples=[
        OpenApiExample(
            "job",
            request_only=True,
            value={
                "job_id": "job-1",
                "gpu_uuid": EXAMPLE_GPU["uuid"],
                "kind": "training",
                "started_at": "2025-01-01T00:00:00Z",
                "ended_at": None,
            },
        )
    ],
)

# --- Sign-in and the contributor's own API ---------------------------------------------------


class WalletSerializer(serializers.Serializer):
    address = serializers.CharField(help_text="EIP-55 checksummed.")
    is_payout = serializers.BooleanField()
    linked_at = serializers.DateTimeField()


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    wallets = WalletSerializer(many=True)


class NonceSerializer(serializers.Serializer):
    nonce = serializers.CharField()
    domain = serializers.CharField()
    uri = serializers.CharField()
    chain_id = serializers.IntegerField()
    statement = serializers.CharField()
    expires_in_s = serializers.IntegerField()
    message = serializers.CharField(
        required=False, help_text="With `?address=`: the exact EIP-4361 text to sign."
    )


class SignedMessageSerializer(serializers.Serializer):
    message = serializers.CharField(help_text="An EIP-4361 message built around a fresh nonce.")
    signature = serializers.CharField(help_text="0x-prefixed 65-byte hex (personal_sign).")


class SignedInSerializer(serializers.Serializer):
    address = serializers.CharField()
    contributor = MeSerializer()


class SignedOutSerializer(serializers.Serializer):
    signed_in = serializers.BooleanField()


class DemoSignInSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="A demo contributor: `alice`, `bob` or `carol`.")


SIGNATURE_400 = error(
    f"{INVALID_JSON}, `invalid_request`, `validation_failed`, or why the message was refused: "
    "`malformed_message`, `domain_mismatch`, `uri_mismatch`, `chain_mismatch`, "
    "`unknown_nonce`, `expired`, `not_yet_valid`, …"
)
SIGNATURE_401 = error("`bad_signature`: the signature does not recover the message's address.")
SIGNATURE_429 = error("`throttled`: too many signature attempts from this address.")

NONCE = extend_schema(
    operation_id="auth_nonce",
    tags=["auth"],
    summary="A fresh sign-in nonce",
    description="Also sets the CSRF cookie that the sign-in POST must echo.",
    auth=[],
    parameters=[
        OpenApiParameter(
            "address",
            OpenApiTypes.STR,
            OpenApiParameter.QUERY,
            required=False,
            description="With it, the answer carries the exact message to sign.",
        ),
        RETRY_AFTER,
    ],
    responses={
        200: OpenApiResponse(NonceSerializer, description="A nonce, valid once."),
        400: error("`invalid_address`."),
        429: error("`throttled`: too many nonces for this client address; see Retry-After."),
    },
)

VERIFY = extend_schema(
    operation_id="auth_verify",
    tags=["auth"],
    summary="Sign in with a signed EIP-4361 message",
    description="The first sign-in of a wallet creates its contributor. Sets the session cookie.",
    auth=AUTH_CSRF,
    request=SignedMessageSerializer,
    parameters=[RETRY_AFTER],
    responses={
        200: OpenApiResponse(SignedInSerializer, description="Signed in."),
        400: SIGNATURE_400,
        401: SIGNATURE_401,
        403: error(
            "`csrf_failed`, `account_disabled`, or `demo_wallet` (the demo's wallets sign in "
            "only while the demo runs)."
        ),
        409: error("`nonce_reused`."),
        413: error("`body_too_large`."),
        415: UNSUPPORTED_MEDIA_TYPE,
        429: SIGNATURE_429,
    },
)

LOGOUT = extend_schema(
    operation_id="auth_logout",
    tags=["auth"],
    summary="Sign out",
    description="Ends the session; harmless when not signed in.",
    auth=AUTH_CSRF,
    request=None,
    responses={
        200: OpenApiResponse(SignedOutSerializer, description="Signed out."),
        400: error("`invalid_json`: a JSON Content-Type with a body that is not JSON."),
        403: error("`csrf_failed`."),
        415: UNSUPPORTED_MEDIA_TYPE,
    },
)

DEMO = extend_schema(
    operation_id="auth_demo",
    tags=["auth"],
    summary="Sign in as a demo contributor (DEBUG demo runs only)",
    description="Only while DEBUG and DEMO_FLEET are both on: the demo keys are public.",
    auth=AUTH_CSRF,
    request=DemoSignInSerializer,
    responses={
        200: OpenApiResponse(SignedInSerializer, description="Signed in."),
        400: error(f"{INVALID_JSON}, `invalid_request` or `validation_failed`."),
        403: error("`csrf_failed`."),
        404: error("`not_found`: the demo is not running here."),
        413: error("`body_too_large`."),
        415: UNSUPPORTED_MEDIA_TYPE,
    },
)

ME = extend_schema(
    operation_id="me",
    tags=["me"],
    summary="The signed-in contributor",
    description="Who is signed in, with their wallets.",
    auth=AUTH_SESSION,
    responses={
        200: OpenApiResponse(MeSerializer, description="The contributor."),
        403: UNAUTHENTICATED,
    },
)


class GpuNodeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class MyGpuSerializer(serializers.Serializer):
    uuid = serializers.CharField()
    name = serializers.CharField()
    node = GpuNodeSerializer()
    status = enum_field(("online", "offline", "disabled"))
    last_seen = serializers.DateTimeField(allow_null=True)
    last_sample_at = serializers.DateTimeField(allow_null=True)
    utilization_gpu_pct = serializers.FloatField(allow_null=True)
    memory_used_mib = serializers.IntegerField(allow_null=True)
    memory_total_mib = serializers.IntegerField()
    committed_memory_mib = serializers.IntegerField()
    temperature_c = serializers.FloatField(allow_null=True)
    power_w = serializers.FloatField(allow_null=True)
    job_id = serializers.CharField(allow_null=True)
    enabled = serializers.BooleanField()
    mig_parent_uuid = serializers.CharField(allow_null=True)


class SeriesPointSerializer(serializers.Serializer):
    t = serializers.DateTimeField(help_text="The sample's time, or the rollup's start.")
    utilization_gpu_pct = serializers.FloatField(allow_null=True)
    memory_used_mib = serializers.FloatField(allow_null=True)
    temperature_c = serializers.FloatField(allow_null=True)
    power_w = serializers.FloatField(allow_null=True)
    job_id = serializers.CharField(allow_null=True, required=False, help_text="Raw points only.")
    max_utilization_gpu_pct = serializers.FloatField(
        allow_null=True, required=False, help_text="Rollups only."
    )
    max_memory_used_mib = serializers.IntegerField(
        allow_null=True, required=False, help_text="Rollups only."
    )
    samples = serializers.IntegerField(required=False, help_text="Rollups only.")
    online_s = serializers.FloatField(required=False, help_text="Rollups only.")


SERIES_RANGES = ("1h", "24h", "7d", "30d")


class SeriesSerializer(serializers.Serializer):
    uuid = serializers.CharField()
    range = enum_field(SERIES_RANGES)
    resolution_s = serializers.IntegerField()
    source = enum_field(("raw", "minute", "hour"))
    memory_total_mib = serializers.IntegerField()
    points = SeriesPointSerializer(many=True)


MY_GPUS = extend_schema(
    operation_id="me_gpus",
    tags=["me"],
    summary="My GPUs with their live state",
    description="Every GPU of the signed-in contributor's nodes, with its latest sample.",
    auth=AUTH_SESSION,
    responses={
        200: OpenApiResponse(MyGpuSerializer(many=True), description="The GPUs."),
        403: UNAUTHENTICATED,
    },
)

GPU_SERIES = extend_schema(
    operation_id="me_gpu_series",
    tags=["me"],
    summary="History of one of my GPUs, for charts",
    description="Raw samples for 1h, minute rollups for 24h, hourly rollups for 7d and 30d.",
    auth=AUTH_SESSION,
    parameters=[
        OpenApiParameter("uuid", OpenApiTypes.STR, OpenApiParameter.PATH),
        OpenApiParameter(
            "range",
            OpenApiTypes.STR,
            OpenApiParameter.QUERY,
            required=False,
            enum=SERIES_RANGES,
            default="1h",
        ),
    ],
    responses={
        200: OpenApiResponse(SeriesSerializer, description="The series."),
        400: error("`invalid_range`."),
        403: UNAUTHENTICATED,
        404: error("`not_found`: you have no GPU with this uuid."),
    },
)

WALLETS_LIST = extend_schema(
    operation_id="me_wallets",
    tags=["me"],
    summary="My wallets",
    description="The signed-in contributor's wallets.",
    auth=AUTH_SESSION,
    responses={
        200: OpenApiResponse(WalletSerializer(many=True), description="The wallets."),
        403: UNAUTHENTICATED,
    },
)

WALLETS_LINK = extend_schema(
    operation_id="me_wallets_link",
    tags=["me"],
    summary="Link the wallet that signed the message",
    description="The body is signed like a sign-in, with a fresh nonce from /auth/nonce.",
    auth=AUTH_SESSION_CSRF,
    request=SignedMessageSerializer,
    parameters=[RETRY_AFTER],
    responses={
        201: OpenApiResponse(WalletSerializer, description="Linked."),
        200: OpenApiResponse(WalletSerializer, description="Already yours."),
        400: SIGNATURE_400,
        401: SIGNATURE_401,
        403: UNAUTHENTICATED_OR_CSRF,
        409: error("`wallet_taken` (another contributor's) or `nonce_reused`."),
        413: error("`body_too_large`."),
        415: UNSUPPORTED_MEDIA_TYPE,
        429: SIGNATURE_429,
    },
)

ADDRESS = OpenApiParameter(
    "address", OpenApiTypes.STR, OpenApiParameter.PATH, description="A wallet address (0x…)."
)

WALLET_UNLINK = extend_schema(
    operation_id="me_wallet_unlink",
    tags=["me"],
    summary="Unlink one of my wallets (any but the last)",
    description="Unlinking the payout wallet makes the oldest remaining one the payout wallet.",
    auth=AUTH_SESSION_CSRF,
    parameters=[ADDRESS],
    request=None,
    responses={
        204: OpenApiResponse(description="Unlinked."),
        400: error("`invalid_address`."),
        403: UNAUTHENTICATED_OR_CSRF,
        404: error("`wallet_not_found`."),
        409: error("`last_wallet`: link another before removing it."),
    },
)

WALLET_PAYOUT = extend_schema(
    operation_id="me_wallet_payout",
    tags=["me"],
    summary="Make one of my wallets the payout wallet",
    description="Claims pay this wallet from now on.",
    auth=AUTH_SESSION_CSRF,
    parameters=[ADDRESS],
    request=None,
    responses={
        200: OpenApiResponse(WalletSerializer, description="The new payout wallet."),
        400: error("`invalid_address`, or `invalid_json` for a JSON body that is not JSON."),
        403: UNAUTHENTICATED_OR_CSRF,
        404: error("`wallet_not_found`."),
        415: UNSUPPORTED_MEDIA_TYPE,
    },
)

# --- Rewards ----------------------------------------------------------------------------------


# A date-time, or an empty string for none.
OPTIONAL_DATETIME = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "maxLength": 0}]
}


class RewardRowSerializer(serializers.Serializer):
    epoch_start = serializers.DateTimeField()
    epoch_end = serializers.DateTimeField()
    gpu_uuid = serializers.CharField()
    kind = enum_field(("compute", "idle", "held_out"))
    units = serializers.CharField(help_text="An exact decimal.")
    amount_wei = serializers.CharField(help_text="An integer of wei, as a decimal string.")
    inputs = FreeObjectField(
        help_text=(
            "What explains the entry: `seconds`, `avg_utilization_pct`, `weight` and "
            "`gib_seconds` (null where they do not apply), pool and share."
        )
    )
    reason = serializers.CharField(required=False, help_text="Held-out rows only.")
    detail = serializers.CharField(required=False, allow_blank=True, help_text="Held-out only.")


class RewardTotalsSerializer(serializers.Serializer):
    compute_wei = serializers.CharField()
    idle_wei = serializers.CharField()
    earned_wei = serializers.CharField()


class RewardsSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The page of older epochs, or null.")
    previous = serializers.URLField(allow_null=True, help_text="The page of newer epochs, or null.")
    entries = RewardRowSerializer(many=True)
    totals = RewardTotalsSerializer(help_text="Of this page's entries.")


class BalanceSerializer(serializers.Serializer):
    earned_wei = serializers.CharField()
    claimed_wei = serializers.CharField()
    pending_wei = serializers.CharField()
    claimable_wei = serializers.CharField()


MY_REWARDS = extend_schema(
    operation_id="me_rewards",
    tags=["me"],
    summary="My reward entries, explained, for epochs starting in [from, to), a page at a time",
    description=(
        "Pages of whole epochs, newest first: every row of up to `limit` epochs. Follow `next` "
        "for older epochs and `previous` for newer ones (null at either end). Without `from`, "
        "the range starts 30 days before `to` (or now). Held-out GPUs appear as "
        "`kind: held_out` with their `reason`, earning nothing. `totals` are the page's; "
        "`GET /api/v1/me/balance` has all time."
    ),
    auth=AUTH_SESSION,
    parameters=[
        *(
            OpenApiParameter(
                bound,
                OPTIONAL_DATETIME,
                OpenApiParameter.QUERY,
                required=False,
                description="RFC 3339 with an offset; empty (as forms send it) is as if left out.",
            )
            for bound in ("from", "to")
        ),
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": rewards_views.REWARDS_MAX_PAGE_EPOCHS},
            OpenApiParameter.QUERY,
            required=False,
            description=f"Epochs per page (default {rewards_views.REWARDS_PAGE_EPOCHS}).",
        ),
        OpenApiParameter(
            "cursor",
            OpenApiTypes.STR,
            OpenApiParameter.QUERY,
            required=False,
            description="Opaque: taken from `next` or `previous` of an earlier page.",
        ),
    ],
    responses={
        200: OpenApiResponse(RewardsSerializer, description="One page of entries and its totals."),
        400: error(
            "`validation_failed`: `from`/`to` not RFC 3339, `to` before `from`, or `limit` out "
            "of range; `invalid_cursor`: a cursor this API did not give out."
        ),
        403: UNAUTHENTICATED,
    },
)

MY_BALANCE = extend_schema(
    operation_id="me_balance",
    tags=["me"],
    summary="My balance in wei: earned, claimed, pending, claimable",
    description='Amounts are decimal strings of wei (DESIGN.md "Balance").',
    auth=AUTH_SESSION,
    responses={
        200: OpenApiResponse(BalanceSerializer, description="The balance."),
        403: UNAUTHENTICATED,
    },
)

# --- Attaching it all -------------------------------------------------------------------------

DOCUMENTED = [
    (agent.EnrollView, {"post": ENROLL}),
    (agent.TelemetryView, {"post": TELEMETRY}),
    (agent.ConfigView, {"get": CONFIG}),
    (rewards_views.SchedulerJobsView, {"post": SCHEDULER_JOBS}),
    (me_views.NonceView, {"get": NONCE}),
    (me_views.VerifyView, {"post": VERIFY}),
    (me_views.LogoutView, {"post": LOGOUT}),
    (me_views.DemoSignInView, {"post": DEMO}),
    (me_views.MeView, {"get": ME}),
    (me_views.MyGpusView, {"get": MY_GPUS}),
    (me_views.MyGpuSeriesView, {"get": GPU_SERIES}),
    (me_views.WalletsView, {"get": WALLETS_LIST, "post": WALLETS_LINK}),
    (me_views.WalletView, {"delete": WALLET_UNLINK}),
    (me_views.PayoutWalletView, {"post": WALLET_PAYOUT}),
    (rewards_views.MyRewardsView, {"get": MY_REWARDS}),
    (rewards_views.MyBalanceView, {"get": MY_BALANCE}),
]


def document(view, methods: dict) -> None:
    """Attach the schema of each HTTP method; only schema generation ever reads it."""
    view.schema = PortalSchema()
    extend_schema_view(**methods)(view)


for _view, _methods in DOCUMENTED:
    document(_view, _methods)


# --- Claims on-chain (rewards/api/claims.py) --------------------------------------------------

from rewards.api import claims as claims_views  # noqa: E402 - appended with the claims API

CHAIN_NOT_CONFIGURED = error(
    "`chain_not_configured`: the portal has no DISTRIBUTOR_ADDRESS or claim signer key."
)


class ClaimsConfigSerializer(serializers.Serializer):
    chain_id = serializers.IntegerField(help_text="The chain vouchers are signed for.")
    distributor = serializers.CharField(help_text="EIP-55 address of the RewardDistributor.")
    token = serializers.CharField(allow_null=True, help_text="The OMNIT token, when configured.")
    signer = serializers.CharField(help_text="The address whose signatures the contract accepts.")


class ClaimTxSerializer(serializers.Serializer):
    to = serializers.CharField(help_text="The distributor.")
    data = serializers.CharField(help_text="The encoded claim(account, cumulative, deadline, sig).")


class VoucherSerializer(serializers.Serializer):
    claim_id = serializers.IntegerField()
    account = serializers.CharField(help_text="The payout wallet the tokens go to.")
    cumulative_amount = serializers.CharField(help_text="Wei the account may have in total.")
    deadline = serializers.IntegerField(help_text="Unix seconds; the voucher reverts after it.")
    signature = serializers.CharField(help_text="EIP-712 signature of the claim signer, 0x-hex.")
    distributor = serializers.CharField()
    chain_id = serializers.IntegerField()
    tx = ClaimTxSerializer(help_text="Send as is with eth_sendTransaction.")


class ClaimSerializer(serializers.Serializer):
    claim_id = serializers.IntegerField()
    account = serializers.CharField()
    cumulative_amount = serializers.CharField(help_text="Wei, the voucher's cumulative amount.")
    amount = serializers.CharField(help_text="Wei this voucher added to the account's earlier.")
    deadline = serializers.IntegerField()
    status = enum_field(["issued", "submitted", "confirmed", "expired"])
    tx_hash = serializers.CharField(allow_null=True)
    tx_url = serializers.CharField(allow_null=True, help_text="EXPLORER_TX_URL with the hash.")
    created_at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    confirmed_at = serializers.DateTimeField(allow_null=True)
    expired_at = serializers.DateTimeField(allow_null=True)


class ClaimListSerializer(serializers.Serializer):
    claims = ClaimSerializer(many=True)


class ClaimTransactionRequestSerializer(serializers.Serializer):
    tx_hash = serializers.CharField(help_text="0x and 64 hex digits.")


CLAIMS_CONFIG = extend_schema(
    operation_id="claims_config",
    tags=["claims"],
    summary="The chain, distributor, token and signer of claims",
    auth=[],
    responses={
        200: OpenApiResponse(ClaimsConfigSerializer, description="The configuration."),
        406: error("`not_acceptable`: ask for `application/json`."),
        503: CHAIN_NOT_CONFIGURED,
    },
)

MY_CLAIMS_LIST = extend_schema(
    operation_id="me_claims_list",
    tags=["me"],
    summary="My claims, newest first",
    auth=AUTH_SESSION,
    responses={
        200: OpenApiResponse(ClaimListSerializer, description="The claim history."),
        403: UNAUTHENTICATED,
    },
)

MY_CLAIMS_ISSUE = extend_schema(
    operation_id="me_claims_issue",
    tags=["me"],
    summary="A voucher for everything claimable, to my payout wallet",
    description=(
        "The voucher and the ready-encoded `claim(...)` call; the page sends `tx` with "
        "`eth_sendTransaction`. Anyone may send it; the tokens always go to `account`."
    ),
    auth=AUTH_SESSION_CSRF,
    request=None,
    responses={
        201: OpenApiResponse(VoucherSerializer, description="The signed voucher."),
        400: error("`invalid_json` for a body that is not JSON."),
        403: UNAUTHENTICATED_OR_CSRF,
        409: error("`nothing_to_claim`; `no_payout_wallet`; `wallet_claimed_by_another_account`."),
        415: UNSUPPORTED_MEDIA_TYPE,
        503: CHAIN_NOT_CONFIGURED,
    },
)

MY_CLAIM_TRANSACTION = extend_schema(
    operation_id="me_claim_transaction",
    tags=["me"],
    summary="Report the transaction that sent one of my vouchers",
    description="issued → submitted. The watcher confirms from the chain, not from this hash.",
    auth=AUTH_SESSION_CSRF,
    parameters=[OpenApiParameter("claim_id", OpenApiTypes.INT, OpenApiParameter.PATH)],
    request=ClaimTransactionRequestSerializer,
    responses={
        200: OpenApiResponse(ClaimSerializer, description="The claim, now submitted."),
        400: error(f"`validation_failed`, {INVALID_JSON}."),
        403: UNAUTHENTICATED_OR_CSRF,
        404: error("`claim_not_found`."),
        409: error("`claim_confirmed` or `claim_expired`: the claim is closed."),
        413: error("`body_too_large`."),
        415: UNSUPPORTED_MEDIA_TYPE,
    },
)

for _view, _methods in [
    (claims_views.ClaimsConfigView, {"get": CLAIMS_CONFIG}),
    (claims_views.MyClaimsView, {"get": MY_CLAIMS_LIST, "post": MY_CLAIMS_ISSUE}),
    (claims_views.ClaimTransactionView, {"post": MY_CLAIM_TRANSACTION}),
]:
    document(_view, _methods)
