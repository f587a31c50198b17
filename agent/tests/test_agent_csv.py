"""nvidia-smi --query-gpu CSV: every real capture parses; hand-checked values match the files."""

import csv
import io
from datetime import UTC, datetime

import pytest

from omnitensor_agent.collectors import values
from omnitensor_agent.collectors.csv import parse_query_gpu_csv

TS = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


def _read(data_dir, name):
    return (data_dir / "nvidia-smi-csv" / name).read_text(encoding="utf-8")


def test_every_file_parses_to_one_gpu(data_dir):
    files = sorted((data_dir / "nvidia-smi-csv").iterdir())
    assert len(files) == 23
    for path in files:
        readings = parse_query_gpu_csv(path.read_text(encoding="utf-8"), ts=TS)
        assert len(readings) == 1, path.name
        gpu = readings[0]
        assert gpu.uuid.startswith("GPU-"), path.name
        assert gpu.memory_total_mib and gpu.memory_total_mib > 0, path.name
        assert 0 <= gpu.memory_used_mib <= gpu.memory_total_mib, path.name
        assert gpu.temperature_c is not None and gpu.power_w is not None, path.name
        assert gpu.ts == TS
        assert gpu.to_sample()["ts"] == "2026-07-01T12:00:00.000000Z"


def test_no_bracketed_value_in_any_file_crashes_or_becomes_a_number(data_dir):
    seen = set()
    for path in (data_dir / "nvidia-smi-csv").glob("*.csv"):
        rows = list(
            csv.reader(io.StringIO(path.read_text(encoding="utf-8")), skipinitialspace=True)
        )
        for cell in rows[1]:
            if cell.startswith("["):
                seen.add(cell)
                assert values.number(cell) is None
                assert values.mib(cell) is None
    assert {"[N/A]", "[Requested functionality has been deprecated]"} <= seen


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01__load__query-gpu.csv",
            dict(
                uuid="GPU-00000000-0000-0000-0000-000000000000",
                name="NVIDIA H100 80GB HBM3",
                memory_total_mib=81559,
                memory_used_mib=19818,
                utilization_gpu_pct=100,
                temperature_c=59,
                power_w=631.95,
                driver_version="590.48.01",
                pci_bus_id="00000000:00:09.0",
            ),
        ),
        (
            # MIG mode: the whole-GPU utilization is [N/A] and must become None.
            "linux-x86_64__nvidia-h100-mig__590.48.01__idle__query-gpu.csv",
            dict(
                name="NVIDIA H100 80GB HBM3",
                memory_total_mib=81559,
                memory_used_mib=59,
                utilization_gpu_pct=None,
                temperature_c=42,
                power_w=71.15,
            ),
        ),
        (
            # power.draw.average is [N/A] here; power.draw itself is what we take.
            "linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05__idle__query-gpu.csv",
            dict(
                name="NVIDIA GeForce RTX 2080 SUPER",
                memory_total_mib=8192,
                memory_used_mib=214,
                utilization_gpu_pct=0,
                temperature_c=40,
                power_w=39.32,
                driver_version="595.71.05",
                pci_bus_id="00000000:0C:00.0",
            ),
        ),
        (
            "linux-x86_64__nvidia-h200__590.48.01__load__query-gpu.csv",
            dict(
                name="NVIDIA H200",
                memory_total_mib=143771,
                memory_used_mib=32362,
                utilization_gpu_pct=100,
                temperature_c=52,
                power_w=627.40,
                pci_bus_id="00000000:83:00.0",
            ),
        ),
        (
            "linux-x86_64__nvidia-l40s__595.80__load__query-gpu.csv",
            dict(
                name="NVIDIA L40S",
                memory_total_mib=46068,
                memory_used_mib=1235,
                utilization_gpu_pct=9,
                temperature_c=54,
                power_w=110.23,
                driver_version="595.80",
            ),
        ),
        (
            "windows-x86_64__nvidia-geforce-rtx-2080-super__610.62__idle__query-gpu.csv",
            dict(memory_used_mib=797, utilization_gpu_pct=0, temperature_c=40, power_w=39.25),
        ),
        (
            # Older field set (clocks_throttle_reasons.*), Windows, driver 471.11.
            "utkuozdemir_sample-output_rtx2080super_win_471.11.csv",
            dict(
                uuid="GPU-df6e7a7c-7314-46f8-abc4-b88b36dcf3aa",
                name="NVIDIA GeForce RTX 2080 SUPER",
                memory_total_mib=8192,
                memory_used_mib=876,
                utilization_gpu_pct=2,
                temperature_c=36,
                power_w=32.70,
                driver_version="471.11",
            ),
        ),
        (
            # A transcript: the CSV block sits between "# nvidia-smi ..." command lines.
            "utkuozdemir_output_ubuntu_20.04_v465.27.txt",
            dict(
                uuid="GPU-df6e7a7c-7314-46f8-abc4-b88b36dcf3aa",
                memory_total_mib=7979,
                memory_used_mib=344,
                utilization_gpu_pct=0,
                temperature_c=32,
                power_w=30.37,
                driver_version="465.27",
            ),
        ),
        (
            "utkuozdemir_output_win10_v466.63.txt",
            dict(
                memory_total_mib=8192,
                memory_used_mib=856,
                utilization_gpu_pct=0,
                temperature_c=35,
                power_w=31.12,
                driver_version="466.63",
            ),
        ),
    ],
)
def test_hand_checked_values(data_dir, name, expected):
    (gpu,) = parse_query_gpu_csv(_read(data_dir, name), ts=TS)
    for key, value in expected.items():
        assert getattr(gpu, key) == value, key


def test_nounits_and_the_agents_own_query():
    text = (
        "uuid, name, memory.total, memory.used, utilization.gpu, temperature.gpu, power.draw,"
        " driver_version, pci.bus_id\n"
        "GPU-aaaa, NVIDIA H100 80GB HBM3, 81559, 19818, 100, 59, 631.95, 590.48.01,"
        " 00000000:00:09.0\n"
        "GPU-bbbb, NVIDIA H100 80GB HBM3, 81559, 0, [N/A], [Not Supported], [N/A], 590.48.01,"
        " 00000000:00:0A.0\n"
    )
    first, second = parse_query_gpu_csv(text, ts=TS)
    assert (first.memory_total_mib, first.memory_used_mib, first.utilization_gpu_pct) == (
        81559,
        19818,
        100,
    )
    assert (first.temperature_c, first.power_w) == (59, 631.95)
    assert second.utilization_gpu_pct is None
    assert second.temperature_c is None and second.power_w is None
    assert second.to_sample()["utilization_gpu_pct"] is None
    assert "power_w" not in second.to_sample()


def test_units_in_header_and_values():
    text = (
        "uuid, name, memory.total [MiB], memory.used [MiB], utilization.gpu [%],"
        " temperature.gpu, power.draw [W], driver_version, pci.bus_id\n"
        "GPU-cccc, Tesla T4, 15360 MiB, 1032 MiB, 7 %, 40, 72.43 W, 515.105.01, 00000000:00:1E.0\n"
    )
    (gpu,) = parse_query_gpu_csv(text, ts=TS)
    assert (gpu.memory_total_mib, gpu.memory_used_mib, gpu.utilization_gpu_pct) == (15360, 1032, 7)
    assert gpu.power_w == 72.43


def test_text_without_a_csv_block_is_an_error():
    with pytest.raises(ValueError, match="no nvidia-smi"):
        parse_query_gpu_csv("NVIDIA-SMI has failed because it couldn't communicate with the driver")
