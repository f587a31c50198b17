"""The scheduler's API: it attests the jobs it ran, which alone earn compute rewards."""

from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from contributors.api.agent import bearer_token
from contributors.models import ServiceToken
from portal.api_errors import ApiError
from portal.jsonbody import read_json_object
from rewards.jobs import attest


def _iso(moment) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


class SchedulerJobsView(APIView):
    """POST /api/v1/scheduler/jobs: 201 for a new job, 200 when its end is set."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request):
        return 'Bearer realm="omnitensor-scheduler"'

    def post(self, request):
        if ServiceToken.authenticate(bearer_token(request), ServiceToken.Scope.SCHEDULER) is None:
            raise ApiError(401, "invalid_token", "This is not a valid scheduler token.")
        attested = attest(read_json_object(request, 16 * 1024))
        job = attested.job
        return Response(
            {
                "job_id": job.job_id,
                "gpu_uuid": job.gpu.uuid,
                "kind": job.kind,
                "started_at": _iso(job.started_at),
                "ended_at": _iso(job.ended_at),
            },
            status=201 if attested.created else 200,
        )
