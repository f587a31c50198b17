"""``nvidia-smi -q -x`` collector and parser (DTD v10 to v13).

Fields moved between DTD versions (``power_readings/power_draw`` became
``gpu_power_readings/average_power_draw`` and ``instant_power_draw``), and old v10
fragments lack driver_version and more; every lookup therefore tolerates absence.
MIG instances under ``<mig_devices>`` are reported with their parent's uuid.
"""

from __future__ import annotations

# The XML comes from the local nvidia-smi binary, not from the network, and ElementTree
# neither fetches the external DTD nor expands external entities.
import xml.etree.ElementTree as ET
from datetime import datetime

from omnitensor_agent.collectors import values
from omnitensor_agent.collectors.smi import find_nvidia_smi, run_nvidia_smi
from omnitensor_agent.readings import GpuReading, synthetic_mig_uuid, utcnow

_POWER_CONTAINERS = ("gpu_power_readings", "power_readings")
# nvidia-smi's own power.draw is the average where the board has one, else the instant value.
_POWER_FIELDS = ("power_draw", "average_power_draw", "instant_power_draw")


def _text(element: ET.Element | None, path: str) -> str | None:
    if element is None:
        return None
    return values.text_or_none(element.findtext(path))


def _power(gpu: ET.Element) -> float | None:
    for container in _POWER_CONTAINERS:
        readings = gpu.find(container)
        for tag in _POWER_FIELDS:
            watts = values.number(_text(readings, tag))
            if watts is not None:
                return watts
    return None


def _mig_readings(gpu: ET.Element, parent: GpuReading) -> list[GpuReading]:
    out = []
    for mig in gpu.findall("mig_devices/mig_device"):
        gi = _text(mig, "gpu_instance_id")
        ci = _text(mig, "compute_instance_id")
        uuid = _text(mig, "uuid") or synthetic_mig_uuid(parent.uuid, gi or "?", ci or "?")
        profile = _text(mig, "profile_name") or f"GI {gi} CI {ci}"
        out.append(
            GpuReading(
                uuid=uuid,
                name=f"{parent.name or 'GPU'} MIG {profile}",
                memory_total_mib=values.mib(_text(mig, "fb_memory_usage/total")),
                memory_used_mib=values.mib(_text(mig, "fb_memory_usage/used")),
                # Per-instance utilization, temperature and power are not in this output.
                utilization_gpu_pct=values.number(_text(mig, "utilization/gpu_util")),
                driver_version=parent.driver_version,
                pci_bus_id=parent.pci_bus_id,
                mig_parent_uuid=parent.uuid,
                ts=parent.ts,
            )
        )
    return out


def parse_smi_xml(text: str | bytes, ts: datetime | None = None) -> list[GpuReading]:
    ts = ts or utcnow()
    root = ET.fromstring(text)  # noqa: S314 -- local nvidia-smi output, see import
    if root.tag != "nvidia_smi_log":
        raise ValueError(f"not nvidia-smi XML (root element <{root.tag}>)")
    driver = _text(root, "driver_version")
    readings: list[GpuReading] = []
    for gpu in root.findall("gpu"):
        uuid = _text(gpu, "uuid")
        if uuid is None:
            continue
        parent = GpuReading(
            uuid=uuid,
            name=_text(gpu, "product_name"),
            memory_total_mib=values.mib(_text(gpu, "fb_memory_usage/total")),
            memory_used_mib=values.mib(_text(gpu, "fb_memory_usage/used")),
            utilization_gpu_pct=values.number(_text(gpu, "utilization/gpu_util")),
            temperature_c=values.number(_text(gpu, "temperature/gpu_temp")),
            power_w=_power(gpu),
            driver_version=driver,
            pci_bus_id=_text(gpu, "pci/pci_bus_id") or values.text_or_none(gpu.get("id")),
            ts=ts,
        )
        readings.append(parent)
        readings.extend(_mig_readings(gpu, parent))
    return readings


class SmiXmlCollector:
    name = "smi-xml"

    def __init__(self, binary: str = "nvidia-smi") -> None:
        self._path = find_nvidia_smi(binary)

    def collect(self) -> list[GpuReading]:
        ts = utcnow()
        return parse_smi_xml(run_nvidia_smi(self._path, ["-q", "-x"]), ts=ts)

    def close(self) -> None:
        pass
