"""The agent API's OpenAPI description (`contributors.api.agent`): enroll, telemetry, config.

The views check their JSON by hand (on the hottest path a serializer costs too much), so these
serializers only document it; every limit is the constant the checks use.
"""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from contributors.telemetry.validation import (
    MAX_INVENTORY,
    MAX_JOB_ID_LEN,
    MAX_MEMORY_MIB,
    MAX_NAME_LEN,
    MAX_UUID_LEN,
    POWER_RANGE_W,
    TEMPERATURE_RANGE_C,
    UUID_FORMS_TEXT,
)
from portal.lib.schema import (
    AUTH_NODE,
    BODY_TOO_LARGE,
    INVALID_JSON,
    RETRY_AFTER,
    WWW_AUTHENTICATE,
    FieldErrorSerializer,
    ItemByItemListField,
    duration_text,
    error,
    size_text,
)


class GpuSerializer(serializers.Serializer):
    """A GPU as NVML reports it (DESIGN.md "GPU")."""

    uuid = serializers.CharField(max_length=MAX_UUID_LEN, help_text=UUID_FORMS_TEXT)
    name = serializers.CharField(max_length=MAX_NAME_LEN)
    memory_total_mib = serializers.IntegerField(min_value=1, max_value=MAX_MEMORY_MIB)
    driver_version = serializers.CharField(max_length=50, required=False, allow_null=True)
    pci_bus_id = serializers.CharField(max_length=50, required=False, allow_null=True)
    mig_parent_uuid = serializers.CharField(
        max_length=MAX_UUID_LEN,
        required=False,
        allow_null=True,
        help_text="For a MIG instance: its physical GPU's uuid.",
    )


class GpuRejectionSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position in the request's `gpus`.")
    error = serializers.CharField(
        help_text=(
            "`validation_failed`, `implausible_memory` (more memory than its model ships with), "
            "`too_many_gpus` (over MAX_GPUS_PER_NODE physical GPUs, "
            f"{settings.MAX_GPUS_PER_NODE} here) or `gpu_owned_by_other_node`."
        )
    )
    errors = FieldErrorSerializer(many=True, required=False)


class EnrollRequestSerializer(serializers.Serializer):
    enrollment_code = serializers.CharField(
        help_text=f"Single use, valid for {duration_text(settings.ENROLLMENT_CODE_TTL_S)}."
    )
    hostname = serializers.CharField(max_length=255, required=False, allow_blank=True)
    agent_version = serializers.CharField(max_length=50, required=False, allow_blank=True)
    gpus = ItemByItemListField(
        child=GpuSerializer(),
        max_length=MAX_INVENTORY,
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

    gpu_uuid = serializers.CharField(max_length=MAX_UUID_LEN)
    ts = serializers.DateTimeField(
        help_text=(
            f"From {duration_text(settings.TELEMETRY_MAX_AGE_S)} ago to "
            f"{duration_text(settings.TELEMETRY_MAX_AHEAD_S)} ahead of the portal."
        )
    )
    utilization_gpu_pct = serializers.FloatField(
        min_value=0, max_value=100, allow_null=True, help_text="Null when the device cannot say."
    )
    memory_used_mib = serializers.IntegerField(min_value=0, max_value=MAX_MEMORY_MIB)
    memory_total_mib = serializers.IntegerField(min_value=1, max_value=MAX_MEMORY_MIB)
    temperature_c = serializers.FloatField(
        min_value=TEMPERATURE_RANGE_C[0],
        max_value=TEMPERATURE_RANGE_C[1],
        required=False,
        allow_null=True,
    )
    power_w = serializers.FloatField(
        min_value=POWER_RANGE_W[0],
        max_value=POWER_RANGE_W[1],
        required=False,
        allow_null=True,
    )
    job_id = serializers.CharField(max_length=MAX_JOB_ID_LEN, required=False, allow_null=True)


class TelemetryBatchSerializer(serializers.Serializer):
    batch_id = serializers.UUIDField(help_text="Idempotency key per node.")
    sent_at = serializers.DateTimeField(help_text="The agent's clock when it sent the batch.")
    gpus = ItemByItemListField(
        child=GpuSerializer(),
        max_length=MAX_INVENTORY,
        required=False,
        allow_null=True,
        help_text="Optional inventory update; a GPU that is not valid is in `rejected_gpus`.",
    )
    samples = ItemByItemListField(
        child=SampleSerializer(),
        max_length=settings.TELEMETRY_MAX_SAMPLES,
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


class ChallengeSerializer(serializers.Serializer):
    challenge_id = serializers.UUIDField()
    gpu_uuid = serializers.CharField(help_text="The physical GPU that must do the work.")
    seed = serializers.CharField(help_text="64 hex digits.")
    n = serializers.IntegerField(help_text="Matrix size, a multiple of 64.")
    rounds = serializers.IntegerField()
    commit_deadline = serializers.DateTimeField(
        help_text="Counted from the first delivery; a later commit fails (`late_commit`)."
    )
    commit_within_s = serializers.FloatField(help_text="Seconds left until the deadline.")


class TelemetryResponseSerializer(serializers.Serializer):
    batch_id = serializers.UUIDField()
    accepted = serializers.IntegerField(min_value=0)
    rejected = SampleRejectionSerializer(many=True)
    rejected_gpus = GpuRejectionSerializer(many=True, required=False)
    challenges = ChallengeSerializer(
        many=True,
        required=False,
        help_text="Proof-of-GPU challenges waiting for this node (agent/PROOF.md); absent when "
        "none. Repeated in every answer until committed.",
    )


class ConfigGpuSerializer(serializers.Serializer):
    uuid = serializers.CharField()
    committed_memory_mib = serializers.IntegerField()
    enabled = serializers.BooleanField()


class AgentConfigSerializer(serializers.Serializer):
    node_id = serializers.IntegerField()
    sample_interval_s = serializers.IntegerField()
    report_interval_s = serializers.IntegerField()
    gpus = ConfigGpuSerializer(many=True)
    challenges = ChallengeSerializer(
        many=True, help_text="Proof-of-GPU challenges waiting for this node (agent/PROOF.md)."
    )


# The GPU `.ci/schemathesis.sh` enrolls, so that the examples name a GPU the node owns.
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
            f"MAX_NODES_PER_CONTRIBUTOR machines, {settings.MAX_NODES_PER_CONTRIBUTOR} here; the "
            "code is not spent)."
        ),
        410: error("`enrollment_code_expired`."),
        413: BODY_TOO_LARGE,
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
        413: error(
            f"`batch_too_large`: over {size_text(settings.TELEMETRY_MAX_BODY_BYTES)}, "
            f"{settings.TELEMETRY_MAX_SAMPLES:,} samples or {MAX_INVENTORY} GPUs."
        ),
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


# --- proof of GPU -----------------------------------------------------------------------------

PROOF_DOC = (
    "The protocol, with its generator, hashing and test vectors, is published with the agent "
    "(`agent/PROOF.md`, `agent/proof-vectors.json`) and served here: "
    "[/api/v1/agent/proof/text](/api/v1/agent/proof/text) and "
    "[/api/v1/agent/proof/vectors](/api/v1/agent/proof/vectors). In short: "
    "int8 matrices `A_r` (per round) and `B` from SplitMix64 words keyed by "
    "sha256(seed + label); products `C_r = A_r @ B` exactly in int32; row digests "
    "`Σ_j w_j (c_j + s_j)² mod 2^64`; leaves of 64 row digests; one sha256 Merkle tree."
)


class CommitRequestSerializer(serializers.Serializer):
    root = serializers.CharField(min_length=64, max_length=64, help_text="Lowercase hex.")
    elapsed_s = serializers.FloatField(
        min_value=0, max_value=86400, help_text="The device's own timing."
    )


class RevealRowRefSerializer(serializers.Serializer):
    round = serializers.IntegerField(min_value=0)
    row = serializers.IntegerField(min_value=0)


class CommitResponseSerializer(serializers.Serializer):
    reveal = RevealRowRefSerializer(many=True, help_text="Drawn at random when the commit came.")
    reveal_deadline = serializers.DateTimeField()


class RevealRowSerializer(RevealRowRefSerializer):
    leaf = serializers.CharField(
        min_length=1024, max_length=1024, help_text="The row's leaf: 64 digests, lowercase hex."
    )
    path = serializers.ListField(
        child=serializers.CharField(min_length=64, max_length=64), max_length=64
    )


class RevealRequestSerializer(serializers.Serializer):
    rows = RevealRowSerializer(many=True, help_text="Exactly the rows the commit answer named.")


class RevealResponseSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="`revealed`: a worker checks it now.")


CHALLENGE_NOT_FOUND = error("`unknown_challenge`: this node has no challenge with that id.")

CHALLENGE_COMMIT = extend_schema(
    operation_id="agent_challenge_commit",
    tags=["agent"],
    summary="Commit a proof-of-GPU challenge's Merkle root",
    description=(
        "Before `commit_deadline`. The answer names the rows to reveal, drawn only now. "
        + PROOF_DOC
    ),
    auth=AUTH_NODE,
    request=CommitRequestSerializer,
    parameters=[WWW_AUTHENTICATE],
    responses={
        200: OpenApiResponse(CommitResponseSerializer, description="Committed."),
        400: error(f"{INVALID_JSON} or `validation_failed` (with `errors`)."),
        401: INVALID_TOKEN,
        403: TOKEN_REVOKED,
        404: CHALLENGE_NOT_FOUND,
        409: error("`already_committed`, `not_delivered` or `challenge_closed` (decided already)."),
        410: error("`late_commit`: past the deadline; the challenge failed."),
        413: BODY_TOO_LARGE,
    },
)

CHALLENGE_REVEAL = extend_schema(
    operation_id="agent_challenge_reveal",
    tags=["agent"],
    summary="Reveal the requested rows of a committed challenge",
    description=(
        "Each requested row's leaf and Merkle path, before `reveal_deadline`; a worker checks "
        "them. " + PROOF_DOC
    ),
    auth=AUTH_NODE,
    request=RevealRequestSerializer,
    parameters=[WWW_AUTHENTICATE],
    responses={
        202: OpenApiResponse(RevealResponseSerializer, description="Accepted for the check."),
        400: error(f"{INVALID_JSON} or `validation_failed` (with `errors`)."),
        401: INVALID_TOKEN,
        403: TOKEN_REVOKED,
        404: CHALLENGE_NOT_FOUND,
        409: error("`not_committed`, `already_revealed` or `challenge_closed`."),
        410: error("`late_reveal`: past the deadline; the challenge failed."),
        413: BODY_TOO_LARGE,
    },
)

PROOF_DOC = extend_schema(
    operation_id="agent_proof_doc",
    tags=["agent"],
    summary="The proof-of-GPU protocol and its test vectors",
    description=(
        "`text`: the protocol (Markdown, agent/PROOF.md); `vectors`: its test vectors (JSON, "
        "agent/proof-vectors.json). An implementation that reproduces the vectors "
        "interoperates with the portal."
    ),
    auth=[],
    parameters=[
        OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH, enum=["text", "vectors"])
    ],
    responses={
        (200, "text/markdown"): OpenApiResponse(OpenApiTypes.STR, description="The protocol."),
        (200, "application/json"): OpenApiResponse(
            OpenApiTypes.OBJECT, description="The test vectors."
        ),
        404: error("`not_found`: the documents are `text` and `vectors`."),
    },
)
