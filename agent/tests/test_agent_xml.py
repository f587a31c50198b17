"""nvidia-smi -q -x: every real file (DTD v10 to v13) parses; hand-checked values."""

from datetime import UTC, datetime

import pytest

from omnitensor_agent.collectors.xml import parse_smi_xml

TS = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


def _parse(data_dir, name):
    return parse_smi_xml((data_dir / "nvidia-smi-xml" / name).read_bytes(), ts=TS)


def test_every_file_parses(data_dir):
    files = sorted((data_dir / "nvidia-smi-xml").glob("*.xml"))
    assert len(files) == 17
    for path in files:
        readings = parse_smi_xml(path.read_bytes(), ts=TS)
        assert readings, path.name
        for gpu in readings:
            assert gpu.uuid.startswith(("GPU-", "MIG-")), path.name
            assert gpu.reportable, path.name
            assert 0 <= gpu.memory_used_mib <= gpu.memory_total_mib, path.name


def test_a100_with_mig_devices(data_dir):
    parent, *migs = _parse(data_dir, "telegraf__a100-sxm4-v12.xml")
    assert parent.uuid == "GPU-513536b6-7d19-9063-b049-1e69664bb298"
    assert parent.name == "NVIDIA A100-SXM4-80GB"
    assert (parent.memory_total_mib, parent.memory_used_mib) == (81920, 50)
    assert parent.utilization_gpu_pct is None  # N/A in MIG mode
    assert (parent.temperature_c, parent.power_w) == (27, 67.03)
    assert parent.driver_version == "535.54.03"
    assert parent.pci_bus_id == "00000000:01:00.0"
    assert parent.mig_parent_uuid is None
    assert len(migs) == 4
    assert [m.uuid for m in migs] == [
        f"MIG-GPU-513536b6-7d19-9063-b049-1e69664bb298/{gi}/0" for gi in (3, 4, 5, 6)
    ]
    for mig in migs:
        assert mig.mig_parent_uuid == parent.uuid
        assert (mig.memory_total_mib, mig.memory_used_mib) == (19968, 12)
        assert mig.utilization_gpu_pct is None
        assert mig.to_gpu()["mig_parent_uuid"] == parent.uuid


def test_v10_fragment_lacks_fields(data_dir):
    (gpu,) = _parse(data_dir, "telegraf__gtx-1070-ti.xml")
    assert gpu.uuid == "GPU-f9ba66fc-a7f5-94c5-da19-019ef2f9c665"
    assert gpu.name == "GeForce GTX 1070 Ti"
    assert (gpu.memory_total_mib, gpu.memory_used_mib) == (4096, 42)
    assert (gpu.utilization_gpu_pct, gpu.temperature_c) == (0, 39)
    assert gpu.power_w is None  # <power_draw>N/A</power_draw>
    assert gpu.driver_version is None  # no <driver_version> in v10 fragments
    assert gpu.pci_bus_id == "00000000:01:00.0"  # from <gpu id="…">
    assert "driver_version" not in gpu.to_gpu()


@pytest.mark.parametrize(
    ("name", "index", "expected"),
    [
        (
            "telegraf__rtx-3080-v13.xml",
            0,
            dict(
                uuid="GPU-19d6d965-2acc-f646-00f8-4c76979aabb4",
                name="NVIDIA GeForce RTX 3080",
                memory_total_mib=10240,
                memory_used_mib=9184,
                utilization_gpu_pct=65,
                temperature_c=27,
                power_w=139.62,  # average_power_draw (v13)
                driver_version="595.58.03",
                pci_bus_id="00000000:0C:00.0",
            ),
        ),
        (
            "telegraf-pr18176__dual_a5000-v13.xml",
            1,
            dict(
                uuid="GPU-12345678-aaaa-bbbb-cccc-0123456789cd",
                name="NVIDIA RTX A5000",
                memory_total_mib=24564,
                memory_used_mib=17253,
                temperature_c=15,
                power_w=13.60,
                pci_bus_id="00000000:C1:00.0",
            ),
        ),
        (
            # average_power_draw is N/A on Turing: fall back to instant_power_draw.
            "telegraf-pr18176__dual_2070-v13.xml",
            0,
            dict(name="NVIDIA GeForce RTX 2070", power_w=9.23, temperature_c=14),
        ),
        (
            "telegraf__tesla-t4.xml",
            0,
            dict(
                uuid="GPU-d37e67a5-91dd-3774-a5cb-99096249601a",
                name="Tesla T4",
                memory_total_mib=15360,
                memory_used_mib=1032,
                utilization_gpu_pct=0,
                temperature_c=40,
                power_w=26.78,
                driver_version="515.105.01",
            ),
        ),
        (
            "telegraf-pr18176__pro-6000-maxq-blackwell-v13.xml",
            0,
            dict(
                name="NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
                memory_total_mib=97887,
                memory_used_mib=65720,
                power_w=3.97,
            ),
        ),
    ],
)
def test_hand_checked_values(data_dir, name, index, expected):
    gpu = _parse(data_dir, name)[index]
    for key, value in expected.items():
        assert getattr(gpu, key) == value, key


def test_not_nvidia_smi_xml():
    with pytest.raises(ValueError, match="not nvidia-smi XML"):
        parse_smi_xml("<html/>")
