"""The scheduler's API (it attests the jobs it ran, which alone earn compute rewards) and the
contributor's rewards API: what each GPU earned per epoch and why, and the balance."""

from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from contributors.api.agent import bearer_token, refuse_bad_token
from contributors.models import ServiceToken
from contributors.telemetry import parse_time
from portal.api_errors import ApiError
from portal.authentication import JsonSessionAuthentication as SessionAuthentication
from portal.jsonbody import read_json_object
from portal.times import rfc3339_or_none
from rewards.jobs import attest
from rewards.models import HeldOut, RewardEntry
from rewards.wei import sum_wei


class SchedulerJobsView(APIView):
    """POST /api/v1/scheduler/jobs: 201 for a new job, 200 when its end is set."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request):
        return 'Bearer realm="omnitensor-scheduler"'

    def post(self, request):
        realm = self.get_authenticate_header(request)
        token = bearer_token(request, realm)
        if ServiceToken.authenticate(token, ServiceToken.Scope.SCHEDULER) is None:
            refuse_bad_token(request, "This is not a valid scheduler token.", realm)
        attested = attest(read_json_object(request, 16 * 1024))
        job = attested.job
        return Response(
            {
                "job_id": job.job_id,
                "gpu_uuid": job.gpu.uuid,
                "kind": job.kind,
                "started_at": rfc3339_or_none(job.started_at),
                "ended_at": rfc3339_or_none(job.ended_at),
            },
            status=201 if attested.created else 200,
        )


# Every entry's inputs carry these, null where they do not apply to its kind.
EXPLAINED_INPUTS = ("seconds", "avg_utilization_pct", "weight", "gib_seconds")


def _time_param(request, name: str):
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    moment = parse_time(raw)
    if moment is None:
        raise ApiError(
            400,
            "validation_failed",
            f"{name} must be an RFC 3339 date-time with an offset.",
            [{"field": name, "error": "an RFC 3339 date-time with offset"}],
        )
    return moment


def _in_range(queryset, start, end):
    if start is not None:
        queryset = queryset.filter(epoch__start__gte=start)
    if end is not None:
        queryset = queryset.filter(epoch__start__lt=end)
    return queryset


def entry_json(entry: RewardEntry) -> dict:
    return {
        "epoch_start": rfc3339_or_none(entry.epoch.start),
        "epoch_end": rfc3339_or_none(entry.epoch.end),
        "gpu_uuid": entry.gpu.uuid,
        "kind": entry.kind,
        "units": entry.units,
        "amount_wei": str(entry.amount_wei),
        "inputs": {**dict.fromkeys(EXPLAINED_INPUTS), **entry.inputs},
    }


def held_out_json(row: HeldOut) -> dict:
    return {
        "epoch_start": rfc3339_or_none(row.epoch.start),
        "epoch_end": rfc3339_or_none(row.epoch.end),
        "gpu_uuid": row.gpu.uuid,
        "kind": "held_out",
        "reason": row.reason,
        "detail": row.detail,
        "units": "0",
        "amount_wei": "0",
        "inputs": {
            "seconds": row.covered_seconds,
            "avg_utilization_pct": None,
            "weight": None,
            "gib_seconds": None,
        },
    }


class MyRewardsView(APIView):
    """GET /api/v1/me/rewards?from=&to=: entries of epochs starting in [from, to), explained.

    Held-out GPUs appear too, as `kind: "held_out"` with their `reason` and nothing earned.
    """

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request):
        start, end = _time_param(request, "from"), _time_param(request, "to")
        if start is not None and end is not None and end < start:
            raise ApiError(400, "validation_failed", "to must not be before from.")
        entries = _in_range(
            RewardEntry.objects.filter(contributor=request.user), start, end
        ).select_related("epoch", "gpu")
        held = _in_range(HeldOut.objects.filter(contributor=request.user), start, end)
        rows = [entry_json(e) for e in entries] + [
            held_out_json(h) for h in held.select_related("epoch", "gpu")
        ]
        rows.sort(key=lambda r: (r["epoch_start"], r["gpu_uuid"], r["kind"]))
        compute = sum_wei(entries.filter(kind=RewardEntry.Kind.COMPUTE), "amount_wei")
        idle = sum_wei(entries.filter(kind=RewardEntry.Kind.IDLE), "amount_wei")
        return Response(
            {
                "entries": rows,
                "totals": {
                    "compute_wei": str(compute),
                    "idle_wei": str(idle),
                    "earned_wei": str(compute + idle),
                },
            }
        )


class MyBalanceView(APIView):
    """GET /api/v1/me/balance: earned, claimed, pending and claimable wei (DESIGN.md "Balance").

    Claimed and pending come from the contributor's vouchers and the Claimed events the watcher
    confirmed (`rewards.claims.balance_of`).
    """

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request):
        from rewards.claims import balance_of

        return Response(balance_of(request.user).as_json())
