"""The OpenAPI description of sign-in (/auth/) and the contributor's own API (/api/v1/me…),
applied to the views of `contributors.api.views`. The views check their JSON by hand; these
serializers only document it, with the constants the checks use."""

from typing import get_args

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from contributors.series import RANGES
from contributors.siwe import ErrorCode as SiweErrorCode
from portal.demo import DEMO_CONTRIBUTORS
from portal.lib.schema import (
    AUTH_CSRF,
    AUTH_SESSION,
    AUTH_SESSION_CSRF,
    BODY_TOO_LARGE,
    INVALID_JSON,
    RETRY_AFTER,
    UNAUTHENTICATED,
    UNAUTHENTICATED_OR_CSRF,
    UNSUPPORTED_MEDIA_TYPE,
    codes,
    enum_field,
    error,
)


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
    name = serializers.CharField(help_text=f"A demo contributor: {codes(DEMO_CONTRIBUTORS)}.")


# Why `contributors.signin.check` refuses a message with a 400: what the EIP-4361 checks say
# (a bad signature is the 401), or a nonce this portal never issued.
_REFUSED_MESSAGE = [code for code in get_args(SiweErrorCode) if code != "bad_signature"]
SIGNATURE_400 = error(
    f"{INVALID_JSON}, `invalid_request`, `validation_failed`, or why the message was refused: "
    f"{codes([*_REFUSED_MESSAGE, 'unknown_nonce'])}."
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
        413: BODY_TOO_LARGE,
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
        413: BODY_TOO_LARGE,
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
    status = enum_field(("online", "offline", "disabled"))  # GPU.status
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


SERIES_SOURCES = tuple(dict.fromkeys(spec.source for spec in RANGES.values()))


def _series_description() -> str:
    """`raw` samples for 1h, `minute` rollups for 24h, `hour` rollups for 7d and 30d."""
    parts = []
    for source in SERIES_SOURCES:
        ranges = [name for name, spec in RANGES.items() if spec.source == source]
        kind = "samples" if source == "raw" else "rollups"
        parts.append(f"`{source}` {kind} for {' and '.join(ranges)}")
    return f"{', '.join(parts)}."


class SeriesSerializer(serializers.Serializer):
    uuid = serializers.CharField()
    range = enum_field(RANGES)
    resolution_s = serializers.IntegerField()
    source = enum_field(SERIES_SOURCES)
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
    description=_series_description(),
    auth=AUTH_SESSION,
    parameters=[
        OpenApiParameter("uuid", OpenApiTypes.STR, OpenApiParameter.PATH),
        OpenApiParameter(
            "range",
            OpenApiTypes.STR,
            OpenApiParameter.QUERY,
            required=False,
            enum=tuple(RANGES),
            default="1h",  # MyGpuSeriesView's
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
        413: BODY_TOO_LARGE,
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
