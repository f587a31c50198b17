"""Prometheus text parser and the exporter collector, on real dcgm-exporter and
nvidia_gpu_exporter pages."""

import math
from datetime import UTC, datetime

import pytest

from omnitensor_agent.collectors import prometheus
from omnitensor_agent.collectors.base import CollectorError
from omnitensor_agent.collectors.dcgm import DcgmCollector, parse_metrics

TS = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
MIG_FILES = [
    "runai__mig-disabled_empty.txt",
    "runai__mig-enabled_empty.txt",
    "runai__mig_4-active-workloads.txt",
    "runai__mig_active-1g.5gb.txt",
    "runai__mig_active-2x1g.5gb+2g.10gb.txt",
    "runai__mig_idle-1g.5gb-allocated.txt",
]


def _text(data_dir, name, folder="dcgm-exporter"):
    return (data_dir / folder / name).read_text(encoding="utf-8")


def test_parser_basics():
    samples, skipped = prometheus.parse(
        "# HELP x help\n# TYPE x gauge\n"
        'x{a="1",b="q\\"uote\\\\",} 2.5\n'
        "y 3 1700000000000\n"
        'z{le="+Inf"} NaN\n'
        "w -Inf\n"
    )
    assert skipped == []
    assert samples[0] == prometheus.Sample("x", {"a": "1", "b": 'q"uote\\'}, 2.5)
    assert samples[1].value == 3
    assert math.isnan(samples[2].value)
    assert samples[3].value == -math.inf


def test_mig_files_have_a_title_line_that_is_not_prometheus(data_dir):
    for name in MIG_FILES:
        text = _text(data_dir, name)
        with pytest.raises(prometheus.PrometheusParseError, match="line 1"):
            prometheus.parse(text, strict=True)
        body = text.split("\n", 1)[1]  # strip the title, as the README says
        for scrape in prometheus.split_scrapes(body):
            samples, skipped = prometheus.parse(scrape, strict=True)
            assert samples and not skipped
        # Lenient mode (what the collector uses) skips the title (and dash separators).
        _samples, skipped = prometheus.parse(text, strict=False)
        assert skipped[0] == text.splitlines()[0]
        assert all(set(line) == {"-"} for line in skipped[1:])


def test_two_scrapes_separated_by_dashes(data_dir):
    body = _text(data_dir, "runai__mig-disabled_empty.txt").split("\n", 1)[1]
    scrapes = prometheus.split_scrapes(body)
    assert len(scrapes) == 2
    for scrape in scrapes:
        samples, _ = prometheus.parse(scrape)
        assert len(samples) == 23


def test_every_exporter_file_parses(data_dir):
    files = sorted((data_dir / "dcgm-exporter").glob("*.txt")) + sorted(
        (data_dir / "nvidia_gpu_exporter-metrics").iterdir()
    )
    assert len(files) == 9
    for path in files:
        readings = parse_metrics(path.read_text(encoding="utf-8"), ts=TS)
        assert readings, path.name
        for gpu in readings:
            assert gpu.uuid.startswith(("GPU-", "MIG-")), path.name
            assert gpu.driver_version, path.name


def test_tesla_t4_pair(data_dir):
    first, second = parse_metrics(
        _text(data_dir, "runai__fraction_tesla-t4-multi-gpu_1-workload.txt"), ts=TS
    )
    assert first.uuid == "GPU-7a2e92f2-be71-d37e-a744-541600ffc722"
    assert first.name == "Tesla T4"
    assert (first.memory_used_mib, first.memory_total_mib) == (128, 128 + 14831)
    assert (first.utilization_gpu_pct, first.temperature_c, first.power_w) == (0, 55, 28.722)
    assert first.driver_version == "525.60.13"
    assert second.uuid == "GPU-5f587dd4-6505-0873-c6db-8324dbfe5ba9"
    assert (second.memory_used_mib, second.memory_total_mib) == (5, 5 + 14955)
    assert (second.temperature_c, second.power_w) == (52, 17.035)


def test_mig_instances_carry_their_parent(data_dir):
    readings = parse_metrics(_text(data_dir, "runai__mig_4-active-workloads.txt"), ts=TS)
    parent = "GPU-473571f2-fb37-ef7e-50fe-9885b74a23cd"
    by_uuid = {r.uuid: r for r in readings}
    assert set(by_uuid) == {f"MIG-{parent}/{gi}/0" for gi in (5, 7, 8, 9)}
    gi7 = by_uuid[f"MIG-{parent}/7/0"]
    assert gi7.name == "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
    assert gi7.mig_parent_uuid == parent
    assert (gi7.memory_used_mib, gi7.memory_total_mib) == (6, 6 + 4857)
    assert gi7.utilization_gpu_pct is None  # no DCGM_FI_DEV_GPU_UTIL for MIG instances
    assert (gi7.temperature_c, gi7.power_w) == (35, 112.252)
    gi8 = by_uuid[f"MIG-{parent}/8/0"]
    assert (gi8.memory_used_mib, gi8.memory_total_mib) == (4384, 4384 + 480)
    gi5 = by_uuid[f"MIG-{parent}/5/0"]
    assert gi5.name == "NVIDIA A100-SXM4-40GB MIG 2g.10gb"
    assert (gi5.memory_used_mib, gi5.memory_total_mib) == (13, 13 + 9843)
    assert all(r.driver_version == "520.56.06" for r in readings)


def test_two_scrapes_in_one_page_give_one_gpu(data_dir):
    (gpu,) = parse_metrics(_text(data_dir, "runai__mig-disabled_empty.txt"), ts=TS)
    assert gpu.uuid == "GPU-7099682b-a20d-2bcc-74ab-b9060454d81e"
    assert (gpu.memory_used_mib, gpu.memory_total_mib) == (0, 40384)
    assert (gpu.utilization_gpu_pct, gpu.temperature_c, gpu.power_w) == (0, 29, 45.999)


def test_mig_enabled_without_instances_is_not_reportable(data_dir):
    (gpu,) = parse_metrics(_text(data_dir, "runai__mig-enabled_empty.txt"), ts=TS)
    assert gpu.temperature_c == 32
    assert gpu.memory_total_mib is None and not gpu.reportable


def test_nvidia_gpu_exporter_pages(data_dir):
    folder = "nvidia_gpu_exporter-metrics"
    (h100,) = parse_metrics(
        _text(data_dir, "linux-x86_64__nvidia-h100-mig__590.48.01__load.metrics.txt", folder)
    )
    assert h100.uuid == "GPU-00000000-0000-0000-0000-000000000000"  # "GPU-" restored
    assert h100.name == "NVIDIA H100 80GB HBM3"
    assert (h100.memory_total_mib, h100.memory_used_mib) == (81559, 11125)
    assert h100.utilization_gpu_pct is None  # not exported in MIG mode
    assert (h100.temperature_c, h100.power_w) == (53, 433.78)
    assert h100.pci_bus_id == "00000000:00:09.0"
    (rtx,) = parse_metrics(
        _text(
            data_dir,
            "windows-x86_64__nvidia-geforce-rtx-2080-super__610.62__idle.metrics.txt",
            folder,
        )
    )
    # The same machine's nvidia-smi CSV capture says 8192 / 797 MiB, 0 %, 40, 39.25 W.
    assert (rtx.memory_total_mib, rtx.memory_used_mib) == (8192, 797)
    assert (rtx.utilization_gpu_pct, rtx.temperature_c, rtx.power_w) == (0, 40, 39.25)
    assert rtx.driver_version == "610.62"


def test_collector_scrapes_a_url(data_dir, tmp_path):
    import http.server
    import threading

    page = _text(data_dir, "runai__fraction_tesla-t4-multi-gpu_1-workload.txt").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        readings = DcgmCollector(f"http://127.0.0.1:{server.server_address[1]}/metrics").collect()
        assert [r.uuid for r in readings] == [
            "GPU-7a2e92f2-be71-d37e-a744-541600ffc722",
            "GPU-5f587dd4-6505-0873-c6db-8324dbfe5ba9",
        ]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(CollectorError, match="cannot scrape"):
        DcgmCollector(f"http://127.0.0.1:{server.server_address[1]}/metrics").collect()
