"""The nvidia-smi collectors run a (fake) nvidia-smi binary found on PATH."""

import sys

import pytest

from omnitensor_agent.collectors import CollectorUnavailable, make_collector

H100_CSV = "nvidia-smi-csv/linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01__load__query-gpu.csv"
A100_XML = "nvidia-smi-xml/telegraf__a100-sxm4-v12.xml"


def _fake_smi(tmp_path, monkeypatch, body):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")  # the script needs cat
    monkeypatch.setitem(sys.modules, "pynvml", None)  # make auto skip NVML


def test_csv_and_xml_collectors(tmp_path, monkeypatch, data_dir):
    csv_file, xml_file = data_dir / H100_CSV, data_dir / A100_XML
    _fake_smi(
        tmp_path,
        monkeypatch,
        f'case "$1" in --query-gpu=*) cat "{csv_file}";; -q) cat "{xml_file}";; esac',
    )
    (gpu,) = make_collector("smi-csv").collect()
    assert (gpu.name, gpu.memory_used_mib, gpu.power_w) == ("NVIDIA H100 80GB HBM3", 19818, 631.95)
    assert gpu.ts.tzinfo is not None
    readings = make_collector("smi-xml").collect()
    assert len(readings) == 5 and readings[1].mig_parent_uuid == readings[0].uuid
    assert make_collector("auto").name == "smi-csv"


def test_broken_driver_is_reported_plainly(tmp_path, monkeypatch):
    _fake_smi(
        tmp_path,
        monkeypatch,
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."; '
        "exit 9",
    )
    with pytest.raises(CollectorUnavailable, match="couldn't communicate with the NVIDIA driver"):
        make_collector("auto")
