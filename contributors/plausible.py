"""What a real GPU can be and report (DESIGN.md "GPU identity"): the uuid forms NVML prints,
memory that fits the model, and readings the hardware cannot produce.

A lie that passes these checks is bounded by them: a node cannot register a GPU larger than its
model ships with, and a sample cannot claim more memory than its GPU registered.
"""

import re
import time
from dataclasses import dataclass

from django.conf import settings

from rewards.catalog import Catalog, Spec

_HEX_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# The forms NVML and nvidia-smi print (see tests/data/README.md for the captures):
#   GPU-<uuid>                     a physical GPU (`nvidia-smi -L`, NVML, every driver)
#   MIG-<uuid>                     a MIG instance, drivers R470 and later
#   MIG-GPU-<uuid>/<gi>/<ci>       a MIG instance in the legacy CUDA form (drivers before R470,
#                                  and what the agent builds where a source prints no MIG uuid)
UUID_FORMS = re.compile(
    rf"^(?:GPU-{_HEX_UUID}|MIG-{_HEX_UUID}|MIG-GPU-{_HEX_UUID}/[0-9]{{1,2}}/[0-9]{{1,2}})$"
)
UUID_FORMS_TEXT = "GPU-<uuid>, MIG-<uuid> or MIG-GPU-<uuid>/<gi>/<ci> (hex, as NVML prints it)"
# Drivers report a little less than the marketing size (an H100 80GB: 81559 MiB); this much
# above the largest variant is allowed before a size counts as impossible.
MEMORY_TOLERANCE = 0.02
# Bounds no GPU reading leaves, whatever the model: anything outside is a broken sensor or a lie.
MAX_MEMORY_MIB = 16 * 1024 * 1024


def normal_uuid(value) -> str | None:
    """The uuid in NVML's own (lowercase hex) form, or None if it is not one of UUID_FORMS.

    Case is folded so that `GPU-ABC…` cannot register as a second GPU beside `GPU-abc…`."""
    if not isinstance(value, str) or len(value) > 96:
        return None
    prefix = "MIG-GPU-" if value[:8].upper() == "MIG-GPU-" else value[:4].upper()
    candidate = prefix + value[len(prefix) :].lower()
    return candidate if UUID_FORMS.fullmatch(candidate) else None


def is_physical(uuid: str) -> bool:
    return uuid.startswith("GPU-")


_catalog: tuple[float, Catalog] | None = None
_CATALOG_TTL_S = 60.0


def catalog() -> Catalog:
    """The catalog, read at most once a minute per process (admins edit it rarely)."""
    global _catalog
    now = time.monotonic()
    if _catalog is None or now - _catalog[0] > _CATALOG_TTL_S:
        _catalog = (now, Catalog.load())
    return _catalog[1]


def forget_catalog() -> None:
    global _catalog
    _catalog = None


@dataclass(frozen=True)
class MemoryVerdict:
    total_mib: int  # what the GPU counts with
    unrated: bool
    error: str = ""


def registered_memory(name: str, reported_mib: int) -> MemoryVerdict:
    """The memory a GPU of model `name` reporting `reported_mib` registers with.

    A rated model must fit its largest variant; an unrated one is accepted, capped at
    GPU_UNRATED_MAX_MEMORY_MIB until an admin rates it."""
    spec = catalog().spec(name)
    if spec.pattern is None:
        return MemoryVerdict(min(reported_mib, settings.GPU_UNRATED_MAX_MEMORY_MIB), True)
    largest = spec.max_memory_mib
    if largest is not None and reported_mib > largest * (1 + MEMORY_TOLERANCE):
        return MemoryVerdict(reported_mib, False, "implausible_memory")
    return MemoryVerdict(reported_mib, False)


def max_power_w(spec: Spec) -> float | None:
    if spec.board_power_w is None:
        return None
    return spec.board_power_w * settings.TELEMETRY_POWER_FACTOR_PCT / 100


@dataclass(frozen=True)
class GpuLimits:
    """What a sample of one registered GPU must stay within; small enough for the cache."""

    id: int
    total_mib: int
    max_power_w: float | None
    reports_utilization: bool
    capped: bool  # unrated, its memory capped: larger sample totals are clamped, not flagged

    def as_list(self) -> list:
        return [self.id, self.total_mib, self.max_power_w, self.reports_utilization, self.capped]

    @classmethod
    def from_list(cls, value: list) -> "GpuLimits":
        id_, total, power, util, capped = value
        return cls(int(id_), int(total), None if power is None else float(power), bool(util),
                   bool(capped))  # fmt: skip

    @classmethod
    def of(cls, id_: int, name: str, total_mib: int, unrated: bool, has_instances: bool):
        """A physical GPU in MIG mode reports no utilization of its own (NVML: not supported;
        nvidia-smi: [N/A], see the H100/H200 MIG captures): a number there did not come from
        the driver. Its instances may report one (DCGM's per-instance activity)."""
        return cls(
            id=id_,
            total_mib=total_mib,
            max_power_w=max_power_w(catalog().spec(name)),
            reports_utilization=not has_instances,
            capped=unrated,
        )


def implausibility(limits: GpuLimits, util, used: int, total: int, power) -> str:
    """Why a sample of this GPU cannot be real, or "" when it can."""
    if total > limits.total_mib * (1 + MEMORY_TOLERANCE) and not limits.capped:
        return f"memory total {total} MiB above the {limits.total_mib} MiB it registered"
    if power is not None and limits.max_power_w is not None and power > limits.max_power_w:
        return f"power {power} W far above its model's board power"
    if util is not None and not limits.reports_utilization:
        return "a utilization of its own while in MIG mode (the driver reports none)"
    return ""
