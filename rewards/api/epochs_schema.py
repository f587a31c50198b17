"""The OpenAPI description of the public epochs API (`rewards.api.epochs`): the list of settled
epochs and each one's manifest. The manifest is stored bytes, not a serializer's output: these
serializers only document its shape, as `rewards/verify_epoch.py` defines it."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers

from portal.lib.schema import error
from rewards.api.entries import REWARDS_MAX_PAGE_EPOCHS, REWARDS_PAGE_EPOCHS
from rewards.manifests import FORMAT, PSEUDONYM_HEX
from rewards.models import HeldOut

EXACT = "An exact decimal string."
WEI = "An integer of wei, as a decimal string."
NOT_FOUND = error(
    "`epoch_not_found`: no settled epoch has this id (unknown, not settled yet, or not an id)."
)
EPOCH_ID = OpenApiParameter(
    "epoch_id",
    {"type": "integer", "minimum": 1},
    OpenApiParameter.PATH,
    description="The epoch's `id`, as `GET /api/v1/epochs` lists it.",
)


def exact(**kwargs) -> serializers.CharField:
    return serializers.CharField(help_text=kwargs.pop("help_text", EXACT), **kwargs)


def wei(**kwargs) -> serializers.CharField:
    return serializers.CharField(help_text=kwargs.pop("help_text", WEI), **kwargs)


# --- the list ---------------------------------------------------------------------------------


class EpochLinkSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    sha256 = serializers.CharField(help_text="Hex SHA-256 of the manifest's JSON bytes.")
    manifest_json = serializers.URLField(help_text="The manifest (JSON), to verify.")
    manifest_csv = serializers.URLField(help_text="The same, as a spreadsheet.")


class EpochListSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The page of older epochs, or null.")
    previous = serializers.URLField(allow_null=True, help_text="The page of newer epochs, or null.")
    epochs = EpochLinkSerializer(many=True)


EPOCH_LIST = extend_schema(
    operation_id="epochs_list",
    tags=["epochs"],
    summary="Settled epochs, newest first, with their manifests' SHA-256 (public)",
    description=(
        "No sign-in. Follow `next` for older epochs and `previous` for newer ones (null at "
        "either end). A manifest, once published, never changes: its `sha256` is the one every "
        "contributor's statement shows for that epoch."
    ),
    auth=[],
    parameters=[
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": REWARDS_MAX_PAGE_EPOCHS},
            OpenApiParameter.QUERY,
            required=False,
            description=f"Epochs per page (default {REWARDS_PAGE_EPOCHS}).",
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
        200: OpenApiResponse(EpochListSerializer, description="One page of epochs."),
        400: error(
            "`validation_failed`: `limit` out of range; `invalid_cursor`: a cursor this API "
            "did not give out."
        ),
    },
)

# --- the manifest -----------------------------------------------------------------------------


@extend_schema_field({"type": "string", "enum": list(HeldOut.Reason.values), "nullable": True})
class HeldOutField(serializers.CharField):
    pass


class ManifestEpochSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    seconds = exact(help_text="The epoch's length.")
    settled_at = serializers.DateTimeField(allow_null=True)


class ManifestFormulasSerializer(serializers.Serializer):
    compute_units = serializers.CharField()
    idle_units = serializers.CharField()
    amount_wei = serializers.CharField()


class ManifestPolicySerializer(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True, help_text="Null: the settings' default.")
    grace_s = serializers.IntegerField()
    max_gap_s = serializers.IntegerField()
    compute_pool_wei = wei()
    idle_pool_wei = wei()
    mib_per_gib = serializers.IntegerField()
    formulas = ManifestFormulasSerializer(help_text="The rules the amounts follow, in words.")


class ManifestPoolSerializer(serializers.Serializer):
    total_units = exact()
    paid_wei = wei()
    unallocated_wei = wei(help_text="The pool, when no GPU earned units from it; else 0.")


class ManifestPoolsSerializer(serializers.Serializer):
    compute = ManifestPoolSerializer()
    idle = ManifestPoolSerializer()


class ManifestTotalsSerializer(serializers.Serializer):
    gpus = serializers.IntegerField(help_text="GPUs listed.")
    paid_gpus = serializers.IntegerField(help_text="GPUs with an entry.")
    held_out_gpus = serializers.IntegerField()
    paid_wei = wei()


class ManifestComputeSerializer(serializers.Serializer):
    busy_seconds = exact()
    null_utilization_seconds = exact(help_text="Busy time with no utilization (counted as 0).")
    utilization_pct_seconds = exact(help_text="Σ busy seconds × utilization %.")
    avg_utilization_pct = exact(help_text="Rounded half up to 6 decimals.")
    weight = exact(help_text="The GPU model's rating.")
    units = exact(help_text="utilization_pct_seconds / 100 × weight.")
    amount_wei = wei()


class ManifestIdleSerializer(serializers.Serializer):
    idle_seconds = exact()
    committed_mib = serializers.IntegerField(allow_null=True)
    mib_seconds = exact(help_text="Σ idle seconds × committed MiB left free.")
    avg_available_mib = exact(help_text="Rounded half up to 6 decimals.")
    units = exact(help_text="GiB·s: mib_seconds / mib_per_gib.")
    amount_wei = wei()


class ManifestGpuSerializer(serializers.Serializer):
    gpu = serializers.CharField(
        min_length=PSEUDONYM_HEX,
        max_length=PSEUDONYM_HEX,
        help_text="The GPU's pseudonym: the same in every epoch; its owner's statement shows it.",
    )
    held_out = HeldOutField(help_text="Why it earned nothing, or null.")
    covered_seconds = exact(allow_null=True)
    compute = ManifestComputeSerializer(allow_null=True)
    idle = ManifestIdleSerializer(allow_null=True)
    amount_wei = wei()


class EpochManifestSerializer(serializers.Serializer):
    format = serializers.ChoiceField([FORMAT])
    epoch = ManifestEpochSerializer()
    policy = ManifestPolicySerializer()
    pools = ManifestPoolsSerializer()
    totals = ManifestTotalsSerializer()
    gpus = ManifestGpuSerializer(many=True, help_text="In ascending order of GPU uuid.")


EPOCH_MANIFEST_JSON = extend_schema(
    operation_id="epoch_manifest_json",
    tags=["epochs"],
    summary="An epoch's manifest: policy, pools, totals, every GPU's inputs and wei (public)",
    description=(
        "No sign-in. The stored canonical JSON (keys sorted, no spaces, ASCII), byte for byte "
        "the same on every request; its SHA-256 is the epoch's `sha256`. "
        "`python rewards/verify_epoch.py manifest.json` recomputes every amount from it."
    ),
    auth=[],
    parameters=[EPOCH_ID],
    responses={
        200: OpenApiResponse(EpochManifestSerializer, description="The manifest."),
        404: NOT_FOUND,
    },
)

EPOCH_MANIFEST_CSV = extend_schema(
    operation_id="epoch_manifest_csv",
    tags=["epochs"],
    summary="An epoch's manifest as CSV, for people (public)",
    description=(
        "`field,value` lines (epoch, policy, pools, totals, the JSON's `manifest_sha256`), a "
        "blank line, then one line per GPU with the JSON's columns. Verify the JSON."
    ),
    auth=[],
    parameters=[EPOCH_ID],
    responses={
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The manifest."),
        (404, "application/json"): NOT_FOUND,
    },
)
