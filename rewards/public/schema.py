"""The OpenAPI description of the public API (`rewards.public.api`): the network's figures and
the leaderboard. Documentation-only serializers, written from the constants the code uses."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from portal.lib.schema import codes, enum_field, error
from rewards.models import HeldOut
from rewards.public import leaderboard, network

RETRY_AFTER_503 = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[503],
    description="Seconds to wait before asking again.",
)
COMPUTING = error(
    "`computing`: the figures are being computed (a fresh deployment) or the cache that keeps "
    "them does not answer; ask again after `Retry-After` seconds."
)
NOT_ACCEPTABLE = error("`not_acceptable`: ask for `application/json`.")


class OnlineSerializer(serializers.Serializer):
    gpus = serializers.IntegerField(
        min_value=0,
        help_text="Physical GPUs in the network (enabled, on a machine not revoked) seen within "
        "`online_within_s`; MIG instances count through their GPU.",
    )
    machines = serializers.IntegerField(min_value=0, help_text="Machines not revoked, seen then.")
    committed_mib = serializers.IntegerField(
        min_value=0, help_text="Memory their owners committed to the network, MiB."
    )
    free_mib = serializers.IntegerField(
        min_value=0,
        help_text="Committed memory not in use at each GPU's last report (min(committed, total − "
        "used)), MiB.",
    )
    online_within_s = serializers.IntegerField(help_text="3 report intervals.")


class ModelCountSerializer(serializers.Serializer):
    model = serializers.CharField(
        help_text=f"The catalog's name of the model, `{network.UNRATED_MODELS}` or, past "
        f"{network.MODELS_SHOWN} models, `{network.OTHER_MODELS}`."
    )
    gpus = serializers.IntegerField(min_value=0)


HeldOutCountsSerializer = type(
    "HeldOutCountsSerializer",
    (serializers.Serializer,),
    {reason: serializers.IntegerField(min_value=0) for reason in HeldOut.Reason.values},
)


class EpochPaidSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    compute_paid_wei = serializers.CharField(help_text="An integer of wei, as a decimal string.")
    idle_paid_wei = serializers.CharField(help_text="An integer of wei, as a decimal string.")
    gpus_paid = serializers.IntegerField(min_value=0)
    held_out = HeldOutCountsSerializer(help_text="GPUs held out of this epoch, per reason.")


class HeldOutReasonSerializer(serializers.Serializer):
    reason = enum_field(HeldOut.Reason.values)
    label = serializers.CharField()
    gpus = serializers.IntegerField(min_value=0, help_text="Distinct GPUs, over the epochs listed.")


class VerificationSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    passed = serializers.IntegerField(min_value=0)
    failed = serializers.IntegerField(min_value=0)
    pass_rate = serializers.FloatField(
        allow_null=True,
        min_value=0,
        max_value=1,
        help_text="passed / (passed + failed); null when none was decided.",
    )
    enabled = serializers.BooleanField(help_text="Whether this network verifies GPUs so.")


class ManifestSerializer(serializers.Serializer):
    epoch_start = serializers.DateTimeField()
    sha256 = serializers.CharField(help_text="Hex SHA-256 of the manifest's bytes.")
    url = serializers.CharField(allow_null=True, help_text="The manifest itself (JSON).")


class NetworkSerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField(help_text="When these figures were computed.")
    online = OnlineSerializer()
    models = ModelCountSerializer(many=True, help_text="Online GPUs per model, most first.")
    epochs = EpochPaidSerializer(
        many=True, help_text=f"The last {network.RECENT_EPOCHS} settled epochs, oldest first."
    )
    held_out = HeldOutReasonSerializer(many=True)
    verification = VerificationSerializer(
        help_text="Proof-of-GPU challenges decided in the last 24 h."
    )
    manifests = ManifestSerializer(
        many=True,
        help_text="The manifest SHA-256 of each recent epoch, newest first, once published.",
    )


NETWORK = extend_schema(
    operation_id="network",
    tags=["public"],
    summary="The network now: GPUs and machines online, memory, models, recent epochs",
    description=(
        "Computed every PUBLIC_STATS_EVERY_S seconds for everyone; no sign-in. Amounts are "
        "decimal strings of wei."
    ),
    auth=[],
    parameters=[RETRY_AFTER_503],
    responses={
        200: OpenApiResponse(NetworkSerializer, description="The figures."),
        406: NOT_ACCEPTABLE,
        503: COMPUTING,
    },
)


class LeaderRowSerializer(serializers.Serializer):
    rank = serializers.IntegerField(min_value=1)
    name = serializers.CharField(
        help_text="The display name the contributor chose to be listed by, or their payout "
        "wallet shortened (0x1234…abcd)."
    )
    named = serializers.BooleanField(help_text="Whether `name` is a display name.")
    total_wei = serializers.CharField(help_text="Earned in the period, wei (decimal string).")
    compute_wei = serializers.CharField()
    idle_wei = serializers.CharField()
    online_s = serializers.IntegerField(
        min_value=0, help_text="GPU-seconds online in the period (uptime)."
    )


class LeaderboardSerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField()
    period = enum_field(leaderboard.PERIODS)
    by = enum_field(leaderboard.BOARDS)
    since = serializers.DateTimeField(help_text="Where the period starts.")
    size = serializers.IntegerField(help_text="The most rows a board has.")
    rows = LeaderRowSerializer(many=True)


LEADERBOARD = extend_schema(
    operation_id="leaderboard",
    tags=["public"],
    summary="Contributors ranked by earnings or uptime over 24 h, 7 d or 30 d",
    description=(
        f"The top {leaderboard.BOARD_SIZE}, largest first; ties by the contributor's id. 24h is "
        "the last 24 hours, 7d and 30d whole UTC days (today so far included). Earnings are of "
        "the epochs that started since `since`; uptime is the GPU-seconds online in the hourly "
        "rollups since then. Contributors who chose not to be listed are on no board."
    ),
    auth=[],
    parameters=[
        OpenApiParameter(
            "period",
            {"type": "string", "enum": list(leaderboard.PERIODS)},
            OpenApiParameter.QUERY,
            required=False,
            description=f"Default `{leaderboard.DEFAULT_PERIOD}`.",
        ),
        OpenApiParameter(
            "by",
            {"type": "string", "enum": list(leaderboard.BOARDS)},
            OpenApiParameter.QUERY,
            required=False,
            description=f"Default `{leaderboard.DEFAULT_BOARD}`.",
        ),
        RETRY_AFTER_503,
    ],
    responses={
        200: OpenApiResponse(LeaderboardSerializer, description="The board."),
        400: error(
            f"`validation_failed`: `period` is not {codes(leaderboard.PERIODS)}, or `by` is "
            f"not {codes(leaderboard.BOARDS)} (with `errors`)."
        ),
        406: NOT_ACCEPTABLE,
        503: COMPUTING,
    },
)
