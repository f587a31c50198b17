"""One GPU reading, the common shape every collector returns.

It carries both halves of the Agent API (v1): the GPU inventory entry and the telemetry
SAMPLE, so a collector is read once per tick and both are derived from the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(ts: datetime) -> str:
    """UTC RFC 3339 with a ``Z`` (the API's convention), microseconds kept.

    Microseconds matter: the portal dedups samples on (GPU, ts) and counts coverage to
    the microsecond, so truncating could merge two distinct samples.
    """
    if ts.tzinfo is None:
        raise ValueError("naive datetime: readings are always stamped in UTC")
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class GpuReading:
    uuid: str
    name: str | None = None
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    utilization_gpu_pct: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    driver_version: str | None = None
    pci_bus_id: str | None = None
    mig_parent_uuid: str | None = None
    ts: datetime = field(default_factory=utcnow)
    job_id: str | None = None

    @property
    def reportable(self) -> bool:
        """A SAMPLE needs memory used and total; without them the portal would reject it."""
        return self.memory_total_mib is not None and self.memory_used_mib is not None

    def to_gpu(self) -> dict[str, Any]:
        """The API's GPU object (optional keys only when known)."""
        gpu: dict[str, Any] = {
            "uuid": self.uuid,
            "name": self.name or "Unknown GPU",
            "memory_total_mib": self.memory_total_mib,
        }
        for key in ("driver_version", "pci_bus_id", "mig_parent_uuid"):
            value = getattr(self, key)
            if value is not None:
                gpu[key] = value
        return gpu

    def to_sample(self) -> dict[str, Any]:
        """The API's SAMPLE object. ``utilization_gpu_pct`` stays explicit null (MIG)."""
        sample: dict[str, Any] = {
            "gpu_uuid": self.uuid,
            "ts": rfc3339(self.ts),
            "utilization_gpu_pct": self.utilization_gpu_pct,
            "memory_used_mib": self.memory_used_mib,
            "memory_total_mib": self.memory_total_mib,
        }
        for key in ("temperature_c", "power_w", "job_id"):
            value = getattr(self, key)
            if value is not None:
                sample[key] = value
        return sample

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ts"] = rfc3339(self.ts)
        return data


def synthetic_mig_uuid(
    parent_uuid: str, gpu_instance: int | str, compute_instance: int | str
) -> str:
    """An identifier for a MIG instance when the source does not print its ``MIG-…`` uuid.

    ``nvidia-smi -q -x`` (DTD v12) and dcgm-exporter name MIG instances only by their
    GPU/compute instance ids. This is the legacy CUDA form ``MIG-<parent>/<gi>/<ci>``, which
    is stable across restarts as long as the MIG layout is not rebuilt. NVML gives the real one.
    """
    return f"MIG-{parent_uuid}/{gpu_instance}/{compute_instance}"
