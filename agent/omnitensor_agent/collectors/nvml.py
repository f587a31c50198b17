"""NVML collector through ``pynvml`` (the ``nvidia-ml-py`` package).

Preferred by ``auto``: no subprocess per tick, and it knows real MIG uuids. ``pynvml`` is
imported lazily so that the agent still runs (with another collector) where it is absent.
"""

from __future__ import annotations

import contextlib
from typing import Any

from omnitensor_agent.collectors.base import CollectorError, CollectorUnavailable
from omnitensor_agent.readings import GpuReading, utcnow

_MIB = 1048576


def _str(value: Any) -> str:
    # Old nvidia-ml-py releases returned bytes.
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlCollector:
    name = "nvml"

    def __init__(self) -> None:
        try:
            import pynvml  # lazy: optional at runtime, see the module docstring
        except ImportError as exc:
            raise CollectorUnavailable(
                "pynvml is not installed (pip install nvidia-ml-py)"
            ) from exc
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            # LibraryNotFound (no libnvidia-ml.so), DriverNotLoaded, NoPermission, …
            raise CollectorUnavailable(f"NVML is not usable here: {exc}") from exc
        self._driver = self._safe(pynvml.nvmlSystemGetDriverVersion)

    def _safe(self, fn: Any, *args: Any) -> Any:
        """One field a device does not support (NotSupported, e.g. MIG utilization) is None."""
        try:
            return fn(*args)
        except self._nvml.NVMLError:
            return None

    def _reading(self, handle: Any, ts: Any, parent: GpuReading | None = None) -> GpuReading:
        nv = self._nvml
        memory = self._safe(nv.nvmlDeviceGetMemoryInfo, handle)
        util = self._safe(nv.nvmlDeviceGetUtilizationRates, handle)
        power_mw = self._safe(nv.nvmlDeviceGetPowerUsage, handle)
        pci = self._safe(nv.nvmlDeviceGetPciInfo, handle) if parent is None else None
        name = self._safe(nv.nvmlDeviceGetName, handle)
        return GpuReading(
            uuid=_str(nv.nvmlDeviceGetUUID(handle)),
            name=None if name is None else _str(name),
            memory_total_mib=None if memory is None else memory.total // _MIB,
            memory_used_mib=None if memory is None else memory.used // _MIB,
            utilization_gpu_pct=None if util is None else util.gpu,
            temperature_c=self._safe(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU),
            power_w=None if power_mw is None else round(power_mw / 1000, 3),
            driver_version=None if self._driver is None else _str(self._driver),
            pci_bus_id=parent.pci_bus_id if parent else (pci and _str(pci.busId)),
            mig_parent_uuid=parent.uuid if parent else None,
            ts=ts,
        )

    def _mig_readings(self, handle: Any, parent: GpuReading) -> list[GpuReading]:
        nv = self._nvml
        mode = self._safe(nv.nvmlDeviceGetMigMode, handle)
        if not mode or mode[0] != nv.NVML_DEVICE_MIG_ENABLE:
            return []
        out = []
        for index in range(self._safe(nv.nvmlDeviceGetMaxMigDeviceCount, handle) or 0):
            mig = self._safe(nv.nvmlDeviceGetMigDeviceHandleByIndex, handle, index)
            if mig is not None:  # slots without an instance raise NotFound
                out.append(self._reading(mig, parent.ts, parent))
        return out

    def collect(self) -> list[GpuReading]:
        nv = self._nvml
        ts = utcnow()
        readings: list[GpuReading] = []
        try:
            for index in range(nv.nvmlDeviceGetCount()):
                handle = nv.nvmlDeviceGetHandleByIndex(index)
                parent = self._reading(handle, ts)
                readings.append(parent)
                readings.extend(self._mig_readings(handle, parent))
        except nv.NVMLError as exc:
            raise CollectorError(f"NVML query failed: {exc}") from exc
        return readings

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()
