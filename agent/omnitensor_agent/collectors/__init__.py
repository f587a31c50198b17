"""Collectors: where GPU readings come from.

``auto`` tries NVML first (in-process, real MIG uuids), then ``nvidia-smi`` CSV; the others
(XML, a dcgm-exporter endpoint, the simulator) are chosen explicitly.
"""

from __future__ import annotations

from omnitensor_agent.collectors.base import Collector, CollectorError, CollectorUnavailable

CHOICES = ("auto", "nvml", "smi-csv", "smi-xml", "dcgm", "simulate")

__all__ = ["CHOICES", "Collector", "CollectorError", "CollectorUnavailable", "make_collector"]


def make_collector(
    kind: str = "auto",
    *,
    simulate: int | None = None,
    seed: int = 0,
    dcgm_url: str | None = None,
) -> Collector:
    # Imports are local so that choosing one collector never imports another's dependencies.
    if simulate and kind == "auto":
        kind = "simulate"
    if kind == "simulate":
        from omnitensor_agent.collectors.simulate import SimulatedCollector

        return SimulatedCollector(simulate or 1, seed=seed)
    if kind == "nvml":
        from omnitensor_agent.collectors.nvml import NvmlCollector

        return NvmlCollector()
    if kind == "smi-csv":
        from omnitensor_agent.collectors.csv import SmiCsvCollector

        return SmiCsvCollector()
    if kind == "smi-xml":
        from omnitensor_agent.collectors.xml import SmiXmlCollector

        return SmiXmlCollector()
    if kind == "dcgm":
        from omnitensor_agent.collectors.dcgm import DEFAULT_URL, DcgmCollector

        return DcgmCollector(dcgm_url or DEFAULT_URL)
    if kind == "auto":
        reasons = []
        for candidate in ("nvml", "smi-csv"):
            try:
                collector = make_collector(candidate)
            except CollectorUnavailable as exc:
                reasons.append(f"{candidate}: {exc}")
                continue
            try:
                # Probe once: nvidia-smi can exist while the driver is not loaded.
                collector.collect()
            except (CollectorUnavailable, CollectorError) as exc:
                collector.close()
                reasons.append(f"{candidate}: {exc}")
                continue
            return collector
        raise CollectorUnavailable(
            "no GPU collector works on this machine ("
            + "; ".join(reasons)
            + "). Use --collector dcgm --dcgm-url URL, or --collector simulate to try the agent."
        )
    raise ValueError(f"unknown collector {kind!r} (choose from {', '.join(CHOICES)})")
