"""What a telemetry request may hold: its fields, their limits, and the uuid forms NVML prints.

This runs for every sample of every GPU in the network, and a serializer framework costs
several times more per sample than these checks (FIELD-NOTES.md). A report is read one of two
ways, with the same answer: the usual one, every field of the right type and within its fixed
bounds, is decoded and checked in one pass by msgspec (`Report`, `read_report`), and only what
depends on the node and the clock is left to check per sample (`validate_typed_sample`); any
other body is read as plain JSON and checked field by field (`batch_fields`,
`validate_sample`), which says exactly what is wrong with it. The OpenAPI description
(`contributors.api.agent_schema`) documents the same constants.
"""

import math
import re
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, NamedTuple

import msgspec
from django.conf import settings
from msgspec import Meta

from portal.lib import json_bodies
from portal.lib.errors import Refused
from portal.lib.times import parse_time

MAX_UUID_LEN = 96
MAX_JOB_ID_LEN = 128
MAX_NAME_LEN = 200
MAX_INVENTORY = 256  # GPUs in one inventory (enrollment or report)
# Bounds no reading leaves, whatever the GPU: anything outside is a broken sensor or a lie.
MAX_MEMORY_MIB = 16 * 1024 * 1024
TEMPERATURE_RANGE_C = (-40.0, 150.0)
POWER_RANGE_W = (0.0, 5000.0)

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

# A sample as a batch keeps it until a worker stores it: a list of its `Sample` columns in the
# model's order (`sql.common.SAMPLE_COLUMNS`), about half the size of an object (less to
# encode, write, read back and decode per batch). `validate_sample` builds it in this order.
# Batches accepted before the list form hold objects with these keys, in the same order.
OBJECT_KEYS = ("gpu", "ts", "util", "used", "total", "temp", "power", "job")


def stored_sample(item) -> list:
    """A batch's sample as a list of its columns, whichever form the batch holds."""
    if isinstance(item, dict):
        return [item[key] for key in OBJECT_KEYS]
    return item


def normal_uuid(value) -> str | None:
    """The uuid in NVML's own (lowercase hex) form, or None if it is not one of UUID_FORMS.

    Case is folded so that `GPU-ABC…` cannot register as a second GPU beside `GPU-abc…`."""
    if not isinstance(value, str) or len(value) > MAX_UUID_LEN:
        return None
    prefix = "MIG-GPU-" if value[:8].upper() == "MIG-GPU-" else value[:4].upper()
    candidate = prefix + value[len(prefix) :].lower()
    return candidate if UUID_FORMS.fullmatch(candidate) else None


def is_physical(uuid_: str) -> bool:
    return uuid_.startswith("GPU-")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _printable(value, limit: int) -> bool:
    return isinstance(value, str) and len(value) <= limit and value.isprintable()


def _bounded(low: float, high: float):
    """A number within [low, high] or null, as `_is_number` and the range check take it: an
    int stays an int (a sample is stored as it was sent), a float stays a float."""
    return (
        Annotated[int, Meta(ge=math.ceil(low), le=math.floor(high))]
        | Annotated[float, Meta(ge=low, le=high)]
        | None
    )


class TypedSample(msgspec.Struct, gc=False):
    """A sample whose fields all have their types and fixed bounds (`validate_sample`'s checks
    that depend on nothing else). A body with any sample outside them is not a `Report`."""

    gpu_uuid: str
    ts: str
    memory_used_mib: Annotated[int, Meta(ge=0, le=MAX_MEMORY_MIB)]
    memory_total_mib: Annotated[int, Meta(gt=0, le=MAX_MEMORY_MIB)]
    utilization_gpu_pct: _bounded(0, 100) = None
    temperature_c: _bounded(*TEMPERATURE_RANGE_C) = None
    power_w: _bounded(*POWER_RANGE_W) = None
    job_id: str | None = None


class Report(msgspec.Struct):
    """A telemetry body as msgspec decodes it when every field has its type (`read_report`)."""

    batch_id: str
    sent_at: str
    samples: list[TypedSample]
    gpus: list[Any] | None = None


_REPORT = msgspec.json.Decoder(Report)


def read_report(raw: bytes) -> "Report | dict":
    """A telemetry body: a `Report` when it decodes as one, else the plain JSON object (or the
    400 `invalid_json` that refuses it), for `batch_fields`."""
    report = json_bodies.decode_typed(raw, _REPORT)
    return json_bodies.parse_object(raw) if report is None else report


class BatchFields(NamedTuple):
    batch_id: uuid.UUID
    sent_at: datetime
    samples: list  # dicts as sent, or `TypedSample`s when `typed`
    gpus: list  # an inventory update, often empty
    typed: bool = False


def batch_fields(body: "Report | dict") -> BatchFields:
    """batch_id, sent_at, samples and gpus of a report, or the 400/413 that refuses it."""
    if isinstance(body, Report):
        return _batch_fields(body.batch_id, body.sent_at, body.samples, body.gpus, typed=True)
    return _batch_fields(
        body.get("batch_id"), body.get("sent_at"), body.get("samples"), body.get("gpus", [])
    )


def _batch_fields(batch_id, sent_at, samples, gpus, typed: bool = False) -> BatchFields:
    try:
        batch_id = uuid.UUID(str(batch_id))
    except ValueError:
        raise Refused(
            400,
            "validation_failed",
            "batch_id must be a UUID.",
            [{"field": "batch_id", "error": "a UUID"}],
        ) from None

    errors = []
    sent_at = parse_time(sent_at)
    if sent_at is None:
        errors.append({"field": "sent_at", "error": "an RFC 3339 date-time with offset"})
    if not isinstance(samples, list):
        errors.append({"field": "samples", "error": "a list of samples"})
    if gpus is None:
        gpus = []
    if not isinstance(gpus, list):
        errors.append({"field": "gpus", "error": "a list of GPUs"})
    if errors:
        raise Refused(400, "validation_failed", "The batch has invalid fields.", errors)
    if len(samples) > settings.TELEMETRY_MAX_SAMPLES or len(gpus) > MAX_INVENTORY:
        raise Refused(
            413,
            "batch_too_large",
            f"A batch holds at most {settings.TELEMETRY_MAX_SAMPLES} samples "
            f"and {MAX_INVENTORY} GPUs.",
        )
    return BatchFields(batch_id, sent_at, samples, gpus, typed)


def sent_inventory(body: "Report | dict") -> list:
    """The inventory a report sent ([] for none); for a body `batch_fields` took."""
    gpus = body.gpus if isinstance(body, Report) else body.get("gpus")
    return gpus or []


def named_gpus(fields: BatchFields) -> set[str]:
    """The uuids the samples name, as sent."""
    if fields.typed:
        return {s.gpu_uuid for s in fields.samples}
    return {
        s["gpu_uuid"]
        for s in fields.samples
        if isinstance(s, dict) and isinstance(s.get("gpu_uuid"), str)
    }


def accepted_window(now: datetime) -> tuple[datetime, datetime]:
    """Sample times the portal accepts, from TELEMETRY_MAX_AGE_S ago to MAX_AHEAD_S ahead."""
    return (
        now - timedelta(seconds=settings.TELEMETRY_MAX_AGE_S),
        now + timedelta(seconds=settings.TELEMETRY_MAX_AHEAD_S),
    )


def _named_gpu(uuid_: str, gpus: dict, foreign) -> tuple[object | None, str]:
    """The limits of the node's GPU a sample names, or None and why it is refused.

    Registered uuids are in NVML's case; an agent that sends another still finds its GPU (only
    a miss pays for the normalisation)."""
    limits = gpus.get(uuid_)
    if limits is None:
        uuid_ = normal_uuid(uuid_) or uuid_
        limits = gpus.get(uuid_)
    if limits is None:
        return None, "gpu_owned_by_other_node" if uuid_ in foreign else "unknown_gpu"
    return limits, ""


def validate_sample(
    item, gpus: dict, foreign: set[str], window: tuple[datetime, datetime]
) -> tuple[list | None, str, tuple[int, str] | None]:
    """A sample as stored (`SAMPLE_COLUMNS`), or the error code that refuses it, and for an
    implausible reading, (its GPU's id, what was implausible).

    `gpus`: the node's GPUs by uuid (`inventory.GpuLimits`); `foreign`: uuids of other nodes.
    """
    if not isinstance(item, dict):
        return None, "validation_failed", None
    uuid_ = item.get("gpu_uuid")
    ts = parse_time(item.get("ts"))
    used = item.get("memory_used_mib")
    total = item.get("memory_total_mib")
    if not isinstance(uuid_, str) or ts is None or not _is_int(used) or not _is_int(total):
        return None, "validation_failed", None
    limits, error = _named_gpu(uuid_, gpus, foreign)
    if limits is None:
        return None, error, None
    if not window[0] <= ts <= window[1]:
        return None, "timestamp_out_of_window", None
    if not (0 <= used <= MAX_MEMORY_MIB and 0 < total <= MAX_MEMORY_MIB):
        return None, "out_of_range", None
    if used > total:
        why = f"memory used {used} MiB above total {total} MiB"
        return None, "memory_used_exceeds_total", (limits.id, why)
    util = item.get("utilization_gpu_pct")
    if util is not None and (not _is_number(util) or not 0 <= util <= 100):
        return None, "out_of_range", None
    temperature = item.get("temperature_c")
    if temperature is not None and (
        not _is_number(temperature)
        or not TEMPERATURE_RANGE_C[0] <= temperature <= TEMPERATURE_RANGE_C[1]
    ):
        return None, "out_of_range", None
    power = item.get("power_w")
    if power is not None and (
        not _is_number(power) or not POWER_RANGE_W[0] <= power <= POWER_RANGE_W[1]
    ):
        return None, "out_of_range", None
    job_id = item.get("job_id")
    if job_id is not None and (
        not isinstance(job_id, str) or len(job_id) > MAX_JOB_ID_LEN or not job_id.isprintable()
    ):
        return None, "validation_failed", None
    why = limits.implausibility(util, used, total, power)
    if why:
        return None, "implausible_telemetry", (limits.id, why)
    # An unrated GPU counts with its capped memory, whatever its samples say.
    total = min(total, limits.total_mib)
    used = min(used, total)
    return (
        [limits.id, ts.isoformat(), util, used, total, temperature, power, job_id or ""],
        "",
        None,
    )


def validate_typed_sample(
    item: TypedSample, gpus: dict, foreign: set[str], window: tuple, times: dict
) -> tuple[list | None, str, tuple[int, str] | None]:
    """`validate_sample` for a sample whose types and fixed bounds msgspec checked: the same
    checks that remain, in the same order, so the same answer. `times` keeps each distinct
    `ts` of the batch parsed once (a batch holds a few times for many GPUs)."""
    ts_text = item.ts
    parsed = times.get(ts_text)
    if parsed is None:
        ts = parse_time(ts_text)
        parsed = times[ts_text] = (ts, None if ts is None else ts.isoformat())
    ts, ts_iso = parsed
    if ts is None:
        return None, "validation_failed", None
    limits, error = _named_gpu(item.gpu_uuid, gpus, foreign)
    if limits is None:
        return None, error, None
    if not window[0] <= ts <= window[1]:
        return None, "timestamp_out_of_window", None
    used, total = item.memory_used_mib, item.memory_total_mib
    if used > total:
        why = f"memory used {used} MiB above total {total} MiB"
        return None, "memory_used_exceeds_total", (limits.id, why)
    job_id = item.job_id
    if job_id is not None and (len(job_id) > MAX_JOB_ID_LEN or not job_id.isprintable()):
        return None, "validation_failed", None
    util, power = item.utilization_gpu_pct, item.power_w
    why = limits.implausibility(util, used, total, power)
    if why:
        return None, "implausible_telemetry", (limits.id, why)
    total = min(total, limits.total_mib)
    used = min(used, total)
    return [limits.id, ts_iso, util, used, total, item.temperature_c, power, job_id or ""], "", None


def validate_gpu(item) -> tuple[dict | None, list[dict]]:
    """A GPU inventory entry normalised, or the field errors that refuse it."""
    if not isinstance(item, dict):
        return None, [{"field": "", "error": "must be an object"}]
    errors = []
    uuid_ = normal_uuid(item.get("uuid"))
    if uuid_ is None:
        errors.append({"field": "uuid", "error": UUID_FORMS_TEXT})
    name = item.get("name")
    if not _printable(name, MAX_NAME_LEN) or not name.strip():
        errors.append({"field": "name", "error": "required, printable, at most 200 characters"})
    total = item.get("memory_total_mib")
    if not _is_int(total) or not 0 < total <= MAX_MEMORY_MIB:
        errors.append({"field": "memory_total_mib", "error": "a positive integer of MiB"})
    extras = {}
    for key, limit in (("driver_version", 50), ("pci_bus_id", 50)):
        value = item.get(key)
        if value is not None and not _printable(value, limit):
            errors.append({"field": key, "error": f"printable, at most {limit} characters"})
        extras[key] = value or ""
    parent = item.get("mig_parent_uuid")
    if parent is not None and normal_uuid(parent) is None:
        errors.append({"field": "mig_parent_uuid", "error": UUID_FORMS_TEXT})
    if errors:
        return None, errors
    return {
        "uuid": uuid_,
        "name": name.strip(),
        "memory_total_mib": total,
        "mig_parent_uuid": normal_uuid(parent) if parent is not None else None,
        **extras,
    }, []
