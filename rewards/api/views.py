"""The scheduler's API (it attests the jobs it ran, which alone earn compute rewards) and the
contributor's rewards API: what each GPU earned per epoch and why, and the balance."""

from django.utils import timezone
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from contributors.models import ServiceToken
from contributors.verification import probes
from portal.lib.authentication import JsonSessionAuthentication as SessionAuthentication
from portal.lib.bearer import bearer_token, refuse_bad_token
from portal.lib.errors import ApiError
from portal.lib.json_bodies import read_json_object
from portal.lib.times import parse_time, rfc3339_or_none
from rewards.api import schema as doc
from rewards.api.entries import REWARDS_DEFAULT_RANGE, EpochCursor, page_limit, reward_rows
from rewards.jobs import attest
from rewards.models import Epoch


class SchedulerView(APIView):
    """The scheduler's endpoints: a scheduler service token, nothing else."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request):
        return 'Bearer realm="omnitensor-scheduler"'

    def authenticate_scheduler(self, request) -> None:
        realm = self.get_authenticate_header(request)
        token = bearer_token(request, realm)
        if ServiceToken.authenticate(token, ServiceToken.Scope.SCHEDULER) is None:
            refuse_bad_token(request, "This is not a valid scheduler token.", realm)


class SchedulerJobsView(SchedulerView):
    """POST /api/v1/scheduler/jobs: 201 for a new job, 200 when its end is set."""

    @doc.SCHEDULER_JOBS
    def post(self, request):
        self.authenticate_scheduler(request)
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


class SchedulerProbesView(SchedulerView):
    """POST /api/v1/scheduler/probes: the memory a real job allocated on a GPU (201)."""

    @doc.SCHEDULER_PROBES
    def post(self, request):
        self.authenticate_scheduler(request)
        probe = probes.record(read_json_object(request, 4096))
        return Response(
            {
                "gpu_uuid": probe.gpu.uuid,
                "at": rfc3339_or_none(probe.at),
                "allocated_mib": probe.allocated_mib,
                "ok": probe.ok,
            },
            status=201,
        )


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


class MyRewardsView(APIView):
    """GET /api/v1/me/rewards?from=&to=&limit=&cursor=: entries of epochs starting in [from, to),
    explained, one page of epochs at a time, newest first.

    Without `from`, the range starts REWARDS_DEFAULT_RANGE before `to` (or now). A page holds
    every row of up to `limit` epochs (`rewards.api.entries`); `next` and `previous` are the
    URLs of the pages beside it (null at either end). Held-out GPUs appear too, as
    `kind: "held_out"` with their `reason` and nothing earned. `totals` are the page's;
    `/api/v1/me/balance` has all time.
    """

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @doc.MY_REWARDS
    def get(self, request):
        start, end = _time_param(request, "from"), _time_param(request, "to")
        if start is not None and end is not None and end < start:
            raise ApiError(400, "validation_failed", "to must not be before from.")
        if start is None:
            start = (end or timezone.now()) - REWARDS_DEFAULT_RANGE
        epochs = Epoch.objects.filter(status=Epoch.Status.SETTLED, start__gte=start)
        if end is not None:
            epochs = epochs.filter(start__lt=end)
        paginator = EpochCursor()
        paginator.page_size = page_limit(request)
        page = paginator.paginate_queryset(epochs.only("pk", "start", "end"), request, self)
        rows = reward_rows(request.user, page)
        compute = sum(int(r["amount_wei"]) for r in rows if r["kind"] == "compute")
        idle = sum(int(r["amount_wei"]) for r in rows if r["kind"] == "idle")
        return Response(
            {
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
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

    @doc.MY_BALANCE
    def get(self, request):
        from rewards.claims import balance_of

        return Response(balance_of(request.user).as_json())
