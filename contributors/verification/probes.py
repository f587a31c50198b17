"""Scheduler probes: ground truth for idle memory (README "Proof of GPU").

The network's scheduler places a real job on the GPU that allocates memory and reports what it
got. A probe is about the past (`at`), so it may arrive late, but not from the future nor from
before the GPU existed; the memory it allocated cannot exceed what the GPU has.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from contributors.models import GPU, Probe
from contributors.telemetry.validation import normal_uuid
from portal.lib.errors import Refused
from portal.lib.times import parse_time


def record(body: dict) -> Probe:
    """The probe a scheduler reported; Refused for anything invalid."""
    now = timezone.now()
    errors = []
    gpu_uuid = body.get("gpu_uuid")
    if not isinstance(gpu_uuid, str) or not gpu_uuid or len(gpu_uuid) > 96:
        errors.append({"field": "gpu_uuid", "error": "a GPU uuid"})
    at = parse_time(body.get("at"))
    if at is None:
        errors.append({"field": "at", "error": "an RFC 3339 date-time with offset"})
    elif at > now + timedelta(seconds=settings.TELEMETRY_MAX_AHEAD_S):
        errors.append({"field": "at", "error": "must not be in the future"})
    elif at < now - timedelta(seconds=settings.GPU_PROBE_VALID_S):
        errors.append(
            {"field": "at", "error": "older than GPU_PROBE_VALID_S: it counts for nothing"}
        )
    allocated = body.get("allocated_mib")
    if isinstance(allocated, bool) or not isinstance(allocated, int) or allocated < 0:
        errors.append({"field": "allocated_mib", "error": "a whole number of MiB, 0 or more"})
    ok = body.get("ok")
    if not isinstance(ok, bool):
        errors.append({"field": "ok", "error": "true or false"})
    if errors:
        raise Refused(400, "validation_failed", "The probe has invalid fields.", errors)
    gpu = GPU.objects.filter(uuid__in={gpu_uuid, normal_uuid(gpu_uuid) or gpu_uuid}).first()
    if gpu is None:
        raise Refused(400, "unknown_gpu", f"No GPU {gpu_uuid} is registered.")
    if gpu.mig_parent_id:
        raise Refused(400, "mig_instance", "Probe the physical GPU: its instances count there.")
    if allocated > gpu.memory_total_mib:
        raise Refused(
            400,
            "implausible_probe",
            f"{allocated} MiB is more than the {gpu.memory_total_mib} MiB this GPU has.",
        )
    return Probe.objects.create(gpu=gpu, at=at, allocated_mib=allocated, ok=ok, received_at=now)
