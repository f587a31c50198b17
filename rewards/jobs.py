"""Jobs attested by the network's scheduler: the only work that earns compute rewards."""

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from contributors.models import GPU
from contributors.telemetry.validation import normal_uuid
from portal.lib.errors import Refused
from portal.lib.times import parse_time
from rewards.models import Job

MAX_JOB_ID_LEN = 128


@dataclass(frozen=True)
class Attested:
    job: Job
    created: bool


def attest(body: dict) -> Attested:
    """Record a job (201) or update its end (200); Refused for anything invalid."""
    errors = []
    job_id = body.get("job_id")
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_JOB_ID_LEN:
        errors.append({"field": "job_id", "error": f"a string of 1 to {MAX_JOB_ID_LEN} characters"})
    gpu_uuid = body.get("gpu_uuid")
    if not isinstance(gpu_uuid, str) or not gpu_uuid:
        errors.append({"field": "gpu_uuid", "error": "required"})
    kind = body.get("kind")
    if kind not in Job.Kind.values:
        errors.append({"field": "kind", "error": f"one of {', '.join(Job.Kind.values)}"})
    started_at = parse_time(body.get("started_at"))
    if started_at is None:
        errors.append({"field": "started_at", "error": "an RFC 3339 date-time with offset"})
    ended_raw = body.get("ended_at")
    ended_at = None if ended_raw is None else parse_time(ended_raw)
    if ended_raw is not None and ended_at is None:
        errors.append({"field": "ended_at", "error": "an RFC 3339 date-time with offset, or null"})
    if started_at and ended_at and ended_at < started_at:
        errors.append({"field": "ended_at", "error": "must not be before started_at"})
    if errors:
        raise Refused(400, "validation_failed", "The job has invalid fields.", errors)

    gpu = GPU.objects.filter(uuid__in={gpu_uuid, normal_uuid(gpu_uuid) or gpu_uuid}).first()
    if gpu is None:
        raise Refused(400, "unknown_gpu", f"No GPU {gpu_uuid} is registered.")

    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(job_id=job_id).first()
        if job is None:
            try:
                with transaction.atomic():
                    job = Job.objects.create(
                        job_id=job_id,
                        gpu=gpu,
                        kind=kind,
                        started_at=started_at,
                        ended_at=ended_at,
                        created_at=now,
                        updated_at=now,
                    )
                return Attested(job, created=True)
            except IntegrityError:
                job = Job.objects.select_for_update().get(job_id=job_id)
        if job.gpu_id != gpu.pk or job.started_at != started_at or job.kind != kind:
            raise Refused(
                409,
                "job_conflict",
                "A job with this job_id exists with another GPU, kind or start; "
                "only ended_at can change.",
            )
        job.ended_at = ended_at
        job.updated_at = now
        job.save(update_fields=["ended_at", "updated_at"])
    return Attested(job, created=False)
