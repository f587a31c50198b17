"""The OpenAPI description of the rewards API (`rewards.api.views`, `rewards.api.claims`): the
scheduler's job attestations, rewards, balance and claims. The views check their input by hand;
these serializers only document it, with the constants and choices the checks use."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from contributors.api.agent_schema import EXAMPLE_GPU
from portal.lib.schema import (
    AUTH_SCHEDULER,
    AUTH_SESSION,
    AUTH_SESSION_CSRF,
    BODY_TOO_LARGE,
    INVALID_JSON,
    RETRY_AFTER,
    UNAUTHENTICATED,
    UNAUTHENTICATED_OR_CSRF,
    UNSUPPORTED_MEDIA_TYPE,
    WWW_AUTHENTICATE,
    FreeObjectField,
    codes,
    enum_field,
    error,
)
from rewards.api.entries import (
    EXPLAINED_INPUTS,
    HELD_OUT,
    REWARDS_DEFAULT_RANGE,
    REWARDS_MAX_PAGE_EPOCHS,
    REWARDS_PAGE_EPOCHS,
)
from rewards.jobs import MAX_JOB_ID_LEN
from rewards.models import Claim, Job, RewardEntry

# --- Scheduler --------------------------------------------------------------------------------


class JobRequestSerializer(serializers.Serializer):
    job_id = serializers.CharField(min_length=1, max_length=MAX_JOB_ID_LEN)
    gpu_uuid = serializers.CharField(help_text="A registered GPU or MIG instance.")
    kind = enum_field(Job.Kind.values)
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Null (or absent) while the job runs."
    )


class JobSerializer(serializers.Serializer):
    job_id = serializers.CharField()
    gpu_uuid = serializers.CharField()
    kind = enum_field(Job.Kind.values)
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
        413: BODY_TOO_LARGE,
    },
    examples=[
        OpenApiExample(
            "job",
            request_only=True,
            value={
                "job_id": "job-1",
                "gpu_uuid": EXAMPLE_GPU["uuid"],
                "kind": Job.Kind.TRAINING.value,
                "started_at": "2025-01-01T00:00:00Z",
                "ended_at": None,
            },
        )
    ],
)


class ProbeSerializer(serializers.Serializer):
    gpu_uuid = serializers.CharField(max_length=96, help_text="A physical GPU.")
    at = serializers.DateTimeField(
        help_text="When the job allocated the memory: not in the future, not older than "
        "GPU_PROBE_VALID_S."
    )
    allocated_mib = serializers.IntegerField(
        min_value=0, help_text="What the job really allocated; at most the GPU's memory."
    )
    ok = serializers.BooleanField(help_text="False: the allocation failed.")


SCHEDULER_PROBES = extend_schema(
    operation_id="scheduler_record_probe",
    tags=["scheduler"],
    summary="Record a memory probe",
    description=(
        "The scheduler allocated `allocated_mib` on the GPU through a real job at `at`. While "
        "valid (GPU_PROBE_VALID_S), the GPU's idle units count at most the last successful "
        "probe's memory; a failed probe holds the GPU out of rewards until a later success."
    ),
    auth=AUTH_SCHEDULER,
    request=ProbeSerializer,
    parameters=[WWW_AUTHENTICATE],
    responses={
        201: OpenApiResponse(ProbeSerializer, description="Recorded."),
        400: error(
            f"{INVALID_JSON}, `validation_failed` (with `errors`), `unknown_gpu`, "
            "`mig_instance` or `implausible_probe` (more than the GPU has)."
        ),
        401: error("`invalid_token`: not a valid scheduler token."),
        413: BODY_TOO_LARGE,
    },
    examples=[
        OpenApiExample(
            "probe",
            request_only=True,
            value={
                "gpu_uuid": EXAMPLE_GPU["uuid"],
                "at": "2025-01-01T00:00:00Z",
                "allocated_mib": 40960,
                "ok": True,
            },
        )
    ],
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
    kind = enum_field([*RewardEntry.Kind.values, HELD_OUT])
    units = serializers.CharField(help_text="An exact decimal.")
    amount_wei = serializers.CharField(help_text="An integer of wei, as a decimal string.")
    inputs = FreeObjectField(
        help_text=(
            f"What explains the entry: {codes(EXPLAINED_INPUTS, 'and')} "
            "(null where they do not apply), pool and share."
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
        f"the range starts {REWARDS_DEFAULT_RANGE.days} days before `to` (or now). Held-out "
        f"GPUs appear as `kind: {HELD_OUT}` with their `reason`, earning nothing. `totals` are "
        "the page's; `GET /api/v1/me/balance` has all time."
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

# --- Claims on-chain --------------------------------------------------------------------------

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
    status = enum_field(Claim.Status.values)
    tx_hash = serializers.CharField(allow_null=True)
    tx_url = serializers.CharField(allow_null=True, help_text="EXPLORER_TX_URL with the hash.")
    created_at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    confirmed_at = serializers.DateTimeField(allow_null=True)
    expired_at = serializers.DateTimeField(allow_null=True)
    relayed = serializers.BooleanField(help_text="The portal's relayer sent it (gasless).")


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
        413: BODY_TOO_LARGE,
        415: UNSUPPORTED_MEDIA_TYPE,
    },
)

MY_CLAIM_RELAY = extend_schema(
    operation_id="me_claim_relay",
    tags=["me"],
    summary="Have the portal send one of my vouchers and pay the gas (gasless claim)",
    description=(
        "For contributors without gas or without a browser wallet: the portal's relayer sends "
        "`claim(...)` for an `issued` voucher (from `POST /api/v1/me/claims`) and the claim "
        "becomes `submitted` with the transaction's hash, as when the page reports one. The "
        "tokens go only to the voucher's account, the payout wallet. If the transaction is "
        "dropped or reverts, the voucher expires after its deadline and its amount is "
        "claimable again. Limited to `CLAIM_RELAY_PER_DAY` relays per contributor per 24 h."
    ),
    auth=AUTH_SESSION_CSRF,
    parameters=[
        OpenApiParameter("claim_id", OpenApiTypes.INT, OpenApiParameter.PATH),
        RETRY_AFTER,
    ],
    request=None,
    responses={
        202: OpenApiResponse(ClaimSerializer, description="Sent: the claim, now submitted."),
        400: error("`invalid_json` for a body that is not JSON."),
        403: UNAUTHENTICATED_OR_CSRF,
        404: error("`claim_not_found`."),
        409: error(
            "`claim_submitted`, `claim_confirmed`, `claim_expired`: only an issued voucher is "
            "sent; `claim_past_deadline`: too close to its deadline, claim again; "
            "`claim_not_relayable`: a voucher of another distributor; `claim_would_revert`: "
            "the distributor would refuse it (already paid, paused); `claim_too_costly`: it "
            "needs more gas than the relayer pays."
        ),
        415: UNSUPPORTED_MEDIA_TYPE,
        429: error(
            "`relay_limit`: CLAIM_RELAY_PER_DAY relays of yours in the last 24 hours; "
            "`relay_budget_spent`: CLAIM_RELAY_NETWORK_PER_DAY relays of everyone."
        ),
        503: error(
            "`relay_not_configured` (no relayer key or node), `chain_not_configured`, "
            "`chain_unavailable` (the node did not answer), `gas_price_too_high` (above "
            "CLAIM_RELAY_MAX_GAS_PRICE_WEI), `relayer_underfunded` (the relayer cannot pay the "
            "gas), `relay_failed` (the node refused the transaction)."
        ),
    },
)
