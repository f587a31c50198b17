"""The scheduler's API (it attests the jobs it ran, which alone earn compute rewards) and the
contributor's rewards API: what each GPU earned per epoch and why, and the balance."""

from datetime import timedelta

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from contributors.api.agent import bearer_token, refuse_bad_token
from contributors.models import GPU, ServiceToken
from contributors.telemetry import parse_time
from portal.api_errors import ApiError
from portal.authentication import JsonSessionAuthentication as SessionAuthentication
from portal.jsonbody import read_json_object
from portal.times import rfc3339_or_none
from rewards.jobs import attest
from rewards.models import Epoch, HeldOut, RewardEntry


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


# /api/v1/me/rewards pages by epoch, newest first: a page holds every row of up to `limit`
# epochs, so an epoch is never split across pages and a page costs two indexed queries
# whatever the history (the ledger index is (contributor, epoch)).
REWARDS_PAGE_EPOCHS = 12
REWARDS_MAX_PAGE_EPOCHS = 24
REWARDS_DEFAULT_RANGE = timedelta(days=30)


class EpochCursor(CursorPagination):
    """Opaque cursors over settled epochs (DRF's keyset pagination on the unique start)."""

    ordering = "-start"
    page_size = REWARDS_PAGE_EPOCHS

    def decode_cursor(self, request):
        # DRF checks the encoding; the position must also be a time, or the query would fail.
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = False
        if cursor is False or (cursor and cursor.position and not is_time(cursor.position)):
            raise ApiError(
                400,
                "invalid_cursor",
                "cursor is not one this API gave out; follow `next` or `previous` as given.",
                [{"field": "cursor", "error": "a cursor from a previous page"}],
            )
        return cursor


def is_time(text: str) -> bool:
    try:
        return parse_datetime(text) is not None
    except ValueError:
        return False


def _page_size(request) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return REWARDS_PAGE_EPOCHS
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= REWARDS_MAX_PAGE_EPOCHS):
        raise ApiError(
            400,
            "validation_failed",
            f"limit must be a whole number of epochs from 1 to {REWARDS_MAX_PAGE_EPOCHS}.",
            [{"field": "limit", "error": f"1 to {REWARDS_MAX_PAGE_EPOCHS}"}],
        )
    return int(raw)


def reward_rows(contributor, epochs: list[Epoch]) -> list[dict]:
    """Every entry and held-out row of `contributor` in `epochs`, explained, newest first."""
    by_id = {epoch.pk: epoch for epoch in epochs}
    entries = list(
        RewardEntry.objects.filter(contributor=contributor, epoch_id__in=by_id)
        .order_by()
        .values_list("epoch_id", "gpu_id", "kind", "units", "amount_wei", "inputs")
    )
    held = list(
        HeldOut.objects.filter(contributor=contributor, epoch_id__in=by_id)
        .order_by()
        .values_list("epoch_id", "gpu_id", "reason", "detail", "covered_seconds")
    )
    gpu_ids = {row[1] for row in entries} | {row[1] for row in held}
    uuids = dict(GPU.objects.filter(pk__in=gpu_ids).values_list("pk", "uuid"))
    times = {pk: (rfc3339_or_none(e.start), rfc3339_or_none(e.end)) for pk, e in by_id.items()}
    rank = {pk: position for position, pk in enumerate(by_id)}  # the page's order
    rows = []
    for epoch_id, gpu_id, kind, units, amount, inputs in entries:
        start, end = times[epoch_id]
        rows.append(
            (
                (rank[epoch_id], uuids[gpu_id], kind),
                {
                    "epoch_start": start,
                    "epoch_end": end,
                    "gpu_uuid": uuids[gpu_id],
                    "kind": kind,
                    "units": units,
                    "amount_wei": str(amount),
                    "inputs": {**dict.fromkeys(EXPLAINED_INPUTS), **inputs},
                },
            )
        )
    for epoch_id, gpu_id, reason, detail, covered in held:
        start, end = times[epoch_id]
        rows.append(
            (
                (rank[epoch_id], uuids[gpu_id], "held_out"),
                {
                    "epoch_start": start,
                    "epoch_end": end,
                    "gpu_uuid": uuids[gpu_id],
                    "kind": "held_out",
                    "reason": reason,
                    "detail": detail,
                    "units": "0",
                    "amount_wei": "0",
                    "inputs": {
                        "seconds": covered,
                        "avg_utilization_pct": None,
                        "weight": None,
                        "gib_seconds": None,
                    },
                },
            )
        )
    rows.sort(key=lambda keyed: keyed[0])
    return [row for _, row in rows]


class MyRewardsView(APIView):
    """GET /api/v1/me/rewards?from=&to=&limit=&cursor=: entries of epochs starting in [from, to),
    explained, one page of epochs at a time, newest first.

    Without `from`, the range starts 30 days before `to` (or now). A page holds every row of
    up to `limit` epochs (12, at most 24); `next` and `previous` are the URLs of the pages
    beside it (null at either end). Held-out GPUs appear too, as `kind: "held_out"` with their
    `reason` and nothing earned. `totals` are the page's; `/api/v1/me/balance` has all time.
    """

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

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
        paginator.page_size = _page_size(request)
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

    def get(self, request):
        from rewards.claims import balance_of

        return Response(balance_of(request.user).as_json())
