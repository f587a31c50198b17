"""``nvidia-smi --query-gpu=… --format=csv`` collector and parser.

The parser accepts what real machines print, not just what we ask for: any number of
columns (the captures have 200+), header units (``memory.total [MiB]``) or ``nounits``,
values with units (``81559 MiB``, ``72.43 W``), bracketed non-values (``[N/A]``), and a
CSV block embedded in a transcript with command lines around it.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from datetime import datetime

from omnitensor_agent.collectors import values
from omnitensor_agent.collectors.smi import find_nvidia_smi, run_nvidia_smi
from omnitensor_agent.readings import GpuReading, utcnow

log = logging.getLogger(__name__)

QUERY_FIELDS = (
    "uuid,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw,"
    "driver_version,pci.bus_id"
)

# nvidia-smi accepts several names for one property (see --help-query-gpu).
_ALIASES = {
    "gpu_uuid": "uuid",
    "gpu_name": "name",
    "gpu_bus_id": "pci.bus_id",
}
_UNIT_SUFFIX = re.compile(r"\s*\[[^\]]*\]\s*$")


def _column_key(header: str) -> str:
    key = _UNIT_SUFFIX.sub("", header.strip()).strip().lower()
    return _ALIASES.get(key, key)


def _split(line: str) -> list[str]:
    return next(csv.reader([line], skipinitialspace=True), [])


def _find_header(lines: list[str]) -> int | None:
    """The CSV header is the first line whose comma-separated fields include ``uuid``.

    Transcript lines (``# nvidia-smi --query-gpu="…uuid…"``) are skipped: they start with
    a ``#`` and their fields do not split to a bare ``uuid`` column.
    """
    for index, line in enumerate(lines):
        if line.lstrip().startswith("#") or "," not in line:
            continue
        if {"uuid", "gpu_uuid"} & {_column_key(cell) for cell in _split(line)}:
            return index
    return None


def _pick(row: dict[str, str], *keys: str) -> str | None:
    """The first of ``keys`` that has a value: power.draw is [N/A] on some boards where
    power.draw.instant works, and older drivers only have power.draw."""
    for key in keys:
        if values.text_or_none(row.get(key)) is not None:
            return row[key]
    return None


def parse_query_gpu_csv(text: str, ts: datetime | None = None) -> list[GpuReading]:
    """Readings from ``--query-gpu`` CSV output (or a transcript holding it)."""
    ts = ts or utcnow()
    lines = text.splitlines()
    start = _find_header(lines)
    if start is None:
        raise ValueError("no nvidia-smi --query-gpu CSV header (with a uuid column) found")
    header = [_column_key(cell) for cell in _split(lines[start])]
    readings: list[GpuReading] = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.lstrip().startswith("#"):
            break  # end of the CSV block in a transcript
        cells = next(csv.reader(io.StringIO(line), skipinitialspace=True))
        if len(cells) != len(header):
            log.warning(
                "skipping a CSV row with %d fields (header has %d)", len(cells), len(header)
            )
            continue
        row = dict(zip(header, cells, strict=True))
        uuid = values.text_or_none(row.get("uuid"))
        if uuid is None:
            log.warning("skipping a GPU row without a uuid")
            continue
        readings.append(
            GpuReading(
                uuid=uuid,
                name=values.text_or_none(row.get("name")),
                memory_total_mib=values.mib(row.get("memory.total")),
                memory_used_mib=values.mib(row.get("memory.used")),
                utilization_gpu_pct=values.number(row.get("utilization.gpu")),
                temperature_c=values.number(row.get("temperature.gpu")),
                power_w=values.number(
                    _pick(row, "power.draw", "power.draw.average", "power.draw.instant")
                ),
                driver_version=values.text_or_none(row.get("driver_version")),
                pci_bus_id=values.text_or_none(row.get("pci.bus_id")),
                ts=ts,
            )
        )
    return readings


class SmiCsvCollector:
    name = "smi-csv"

    def __init__(self, binary: str = "nvidia-smi") -> None:
        self._path = find_nvidia_smi(binary)

    def collect(self) -> list[GpuReading]:
        ts = utcnow()
        out = run_nvidia_smi(self._path, [f"--query-gpu={QUERY_FIELDS}", "--format=csv"])
        return parse_query_gpu_csv(out, ts=ts)

    def close(self) -> None:
        pass
