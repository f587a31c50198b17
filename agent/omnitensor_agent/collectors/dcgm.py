"""GPU readings from a Prometheus exporter: NVIDIA dcgm-exporter, or nvidia_gpu_exporter.

dcgm-exporter (``DCGM_FI_*``) is the usual choice on Kubernetes nodes, where the agent may
not see the devices but the exporter does. One entity per (``UUID``, ``GPU_I_ID``): with MIG
enabled every series is per GPU instance and ``UUID`` is the parent's. utkuozdemir's
nvidia_gpu_exporter (``nvidia_smi_*``) is read too, since it is common on hobby rigs.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections import defaultdict
from datetime import datetime

from omnitensor_agent.collectors import prometheus
from omnitensor_agent.collectors.base import CollectorError, CollectorUnavailable
from omnitensor_agent.readings import GpuReading, synthetic_mig_uuid, utcnow

DEFAULT_URL = "http://localhost:9400/metrics"
_MIB = 1048576


def _finite(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return value


def _int(value: float | None) -> int | None:
    value = _finite(value)
    return None if value is None else round(value)


def _num(value: float | None) -> int | float | None:
    """Keep whole numbers as int (a temperature of 35, not 35.0)."""
    value = _finite(value)
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def _first(*candidates: float | None) -> float | None:
    return next((c for c in candidates if c is not None), None)


def _from_dcgm(samples: list[prometheus.Sample], ts: datetime) -> list[GpuReading]:
    by_entity: dict[tuple[str, str], dict[str, prometheus.Sample]] = defaultdict(dict)
    for sample in samples:
        uuid = sample.labels.get("UUID")
        if not uuid or not sample.name.startswith("DCGM_FI_"):
            continue
        # A repeated series (same name and entity) keeps its last value.
        by_entity[(uuid, sample.labels.get("GPU_I_ID", ""))][sample.name] = sample
    readings = []
    for (uuid, gi), metrics in by_entity.items():
        labels = next(iter(metrics.values())).labels

        def value(field: str, metrics: dict[str, prometheus.Sample] = metrics) -> float | None:
            sample = metrics.get(f"DCGM_FI_DEV_{field}")
            return None if sample is None else sample.value

        used, free = _int(value("FB_USED")), _int(value("FB_FREE"))
        total = _int(value("FB_TOTAL"))
        if total is None and used is not None and free is not None:
            total = used + free + (_int(value("FB_RESERVED")) or 0)
        model = labels.get("modelName") or None
        reading = GpuReading(
            uuid=uuid,
            name=model,
            memory_total_mib=total,
            memory_used_mib=used,
            utilization_gpu_pct=_num(value("GPU_UTIL")),
            temperature_c=_num(value("GPU_TEMP")),
            power_w=_num(value("POWER_USAGE")),
            driver_version=labels.get("DCGM_FI_DRIVER_VERSION") or None,
            pci_bus_id=labels.get("pci_bus_id") or None,
            ts=ts,
        )
        if gi:
            # dcgm-exporter does not label the instance's own MIG uuid; one compute
            # instance per GPU instance is the usual layout, hence CI 0.
            reading.mig_parent_uuid = uuid
            reading.uuid = synthetic_mig_uuid(uuid, gi, 0)
            profile = labels.get("GPU_I_PROFILE") or f"GI {gi}"
            reading.name = f"{model or 'GPU'} MIG {profile}"
        readings.append(reading)
    return readings


def _from_nvidia_gpu_exporter(samples: list[prometheus.Sample], ts: datetime) -> list[GpuReading]:
    by_uuid: dict[str, dict[str, prometheus.Sample]] = defaultdict(dict)
    for sample in samples:
        uuid = sample.labels.get("uuid")
        if uuid and sample.name.startswith("nvidia_smi_") and "pid" not in sample.labels:
            by_uuid[uuid][sample.name.removeprefix("nvidia_smi_")] = sample
    readings = []
    for uuid, metrics in by_uuid.items():

        def value(field: str, metrics: dict[str, prometheus.Sample] = metrics) -> float | None:
            sample = metrics.get(field)
            return None if sample is None else _finite(sample.value)

        info = metrics["gpu_info"].labels if "gpu_info" in metrics else {}
        util = value("utilization_gpu_ratio")
        total, used = value("memory_total_bytes"), value("memory_used_bytes")
        readings.append(
            GpuReading(
                # This exporter strips nvidia-smi's "GPU-" prefix; the API wants it back.
                uuid=uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}",
                name=info.get("name") or None,
                memory_total_mib=None if total is None else round(total / _MIB),
                memory_used_mib=None if used is None else round(used / _MIB),
                utilization_gpu_pct=None if util is None else _num(round(util * 100, 6)),
                temperature_c=_num(value("temperature_gpu")),
                power_w=_num(
                    _first(
                        value("power_draw_watts"),
                        value("power_draw_average_watts"),
                        value("power_draw_instant_watts"),
                    )
                ),
                driver_version=info.get("driver_version") or None,
                pci_bus_id=info.get("pci_bus_id") or None,
                ts=ts,
            )
        )
    return readings


def parse_metrics(text: str, ts: datetime | None = None) -> list[GpuReading]:
    """Readings from one exporter page (several pasted scrapes: the last one wins)."""
    ts = ts or utcnow()
    scrapes = prometheus.split_scrapes(text) or [""]
    samples, _skipped = prometheus.parse(scrapes[-1], strict=False)
    if any(s.name.startswith("DCGM_FI_") for s in samples):
        return _from_dcgm(samples, ts)
    if any(s.name.startswith("nvidia_smi_") for s in samples):
        return _from_nvidia_gpu_exporter(samples, ts)
    return []


class DcgmCollector:
    name = "dcgm"

    def __init__(self, url: str = DEFAULT_URL, timeout_s: float = 10.0) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise CollectorUnavailable(f"--dcgm-url must be an http(s) URL, got {url!r}")
        self.url = url
        self.timeout_s = timeout_s

    def collect(self) -> list[GpuReading]:
        ts = utcnow()
        try:
            # Scheme checked in __init__: only http(s) reaches urlopen.
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as resp:  # noqa: S310
                text = resp.read().decode("utf-8", errors="replace")
        except OSError as exc:
            raise CollectorError(f"cannot scrape {self.url}: {exc}") from exc
        readings = parse_metrics(text, ts=ts)
        if not readings:
            raise CollectorError(f"{self.url} exposes no DCGM_FI_* or nvidia_smi_* GPU metrics")
        return readings

    def close(self) -> None:
        pass
