"""NVML collector: clear failure without the library, mapping checked with a stand-in module."""

import sys
import types
from collections import namedtuple

import pytest

from omnitensor_agent.collectors import CollectorUnavailable, make_collector
from omnitensor_agent.collectors.nvml import NvmlCollector


def test_missing_pynvml_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    with pytest.raises(CollectorUnavailable, match="nvidia-ml-py"):
        NvmlCollector()


class _Error(Exception):
    pass


def _fake_pynvml(init_error=None):
    mem = namedtuple("Mem", "total free used")
    util = namedtuple("Util", "gpu memory")
    pci = namedtuple("Pci", "busId")
    mod = types.SimpleNamespace(NVMLError=_Error, NVML_TEMPERATURE_GPU=0, NVML_DEVICE_MIG_ENABLE=1)

    def init():
        if init_error:
            raise _Error(init_error)

    def not_supported(*_):
        raise _Error("Not Supported")

    def mig_handle(_handle, index):
        if index == 0:
            return "mig0"
        raise _Error("Not Found")

    devices = {
        "gpu0": dict(
            uuid="GPU-1", name="NVIDIA H100 80GB HBM3", total=85520809984, used=20781727744
        ),
        "mig0": dict(
            uuid="MIG-abc", name="NVIDIA H100 80GB HBM3 MIG 1g.10gb", total=10737418240, used=0
        ),
    }
    mod.nvmlInit = init
    mod.nvmlShutdown = lambda: None
    mod.nvmlSystemGetDriverVersion = lambda: "590.48.01"
    mod.nvmlDeviceGetCount = lambda: 1
    mod.nvmlDeviceGetHandleByIndex = lambda i: "gpu0"
    mod.nvmlDeviceGetUUID = lambda h: devices[h]["uuid"]
    mod.nvmlDeviceGetName = lambda h: devices[h]["name"]
    mod.nvmlDeviceGetMemoryInfo = lambda h: mem(
        devices[h]["total"], devices[h]["total"] - devices[h]["used"], devices[h]["used"]
    )
    mod.nvmlDeviceGetUtilizationRates = lambda h: util(100, 40) if h == "gpu0" else not_supported()
    mod.nvmlDeviceGetTemperature = lambda h, _s: 59 if h == "gpu0" else not_supported()
    mod.nvmlDeviceGetPowerUsage = lambda h: 631950 if h == "gpu0" else not_supported()
    mod.nvmlDeviceGetPciInfo = lambda h: pci(b"00000000:00:09.0")
    mod.nvmlDeviceGetMigMode = lambda h: (1, 1)
    mod.nvmlDeviceGetMaxMigDeviceCount = lambda h: 7
    mod.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle
    return mod


def test_no_driver_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(init_error="Driver Not Loaded"))
    with pytest.raises(CollectorUnavailable, match="Driver Not Loaded"):
        NvmlCollector()


def test_mapping_and_mig(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    gpu, mig = make_collector("nvml").collect()
    assert (gpu.uuid, gpu.name) == ("GPU-1", "NVIDIA H100 80GB HBM3")
    assert (gpu.memory_total_mib, gpu.memory_used_mib) == (81559, 19819)
    assert (gpu.utilization_gpu_pct, gpu.temperature_c, gpu.power_w) == (100, 59, 631.95)
    assert (gpu.driver_version, gpu.pci_bus_id) == ("590.48.01", "00000000:00:09.0")
    assert mig.mig_parent_uuid == "GPU-1" and mig.memory_total_mib == 10240
    assert mig.utilization_gpu_pct is None and mig.power_w is None


def test_auto_explains_why_nothing_works(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(CollectorUnavailable) as info:
        make_collector("auto")
    assert "nvml:" in str(info.value) and "smi-csv:" in str(info.value)
    assert "--collector simulate" in str(info.value)
