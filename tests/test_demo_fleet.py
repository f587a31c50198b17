"""The demo fleet enrolls and reports through the real HTTP API, and attests its jobs."""

from importlib import import_module

import pytest
from django.test import Client

from contributors.models import GPU, GpuFlag, Node, Sample, TelemetryBatch
from contributors.telemetry import store as ingest
from portal.demo import DEMO_MACHINES, Fleet, demo_account
from rewards.models import Job
from tests.support.processes import wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def gpu_catalog():
    """The catalog as migrations seed it: a transactional test before this one may have
    flushed the tables, and the fleet's GPUs must find their rated models."""
    from django.apps import apps

    from contributors.telemetry import inventory
    from rewards.models import GpuModel

    if not GpuModel.objects.exists():
        seeds = ("0003_seed_gpu_catalog", "0006_catalog_memory_power_values", "0008_proof_of_gpu")
        for name in seeds:
            import_module(f"rewards.migrations.{name}").seed(apps, None)
    inventory.forget_catalog()
    yield
    inventory.forget_catalog()


def test_fleet_reports_every_gpu_and_attests_jobs(live_server, settings, tmp_path):
    settings.AGENT_SAMPLE_INTERVAL_S = 1
    settings.AGENT_REPORT_INTERVAL_S = 1
    fleet = Fleet(live_server.url, tmp_path / "demo")
    try:
        fleet.start()
        total = sum(machine.gpus for machine in DEMO_MACHINES)

        def every_gpu_reported():
            # Ingest in this process: real workers are tested elsewhere; this is about the fleet.
            for pk in TelemetryBatch.objects.filter(status="pending").values_list("pk", flat=True):
                ingest.ingest(pk)
            return GPU.objects.filter(last_sample_at__isnull=False).count() == total

        wait_for(every_gpu_reported, timeout=60, message="not every demo GPU reported")
    finally:
        fleet.stop.set()
        for thread in fleet.threads:
            thread.join(timeout=30)

    assert Node.objects.count() == len(DEMO_MACHINES)
    assert Sample.objects.count() >= total
    # The simulated GPUs are plausible: rated models, memory and power their boards have.
    assert not GPU.objects.filter(unrated=True).exists()
    assert not GpuFlag.objects.exists()
    # Jobs seen on attesting machines were attested through the scheduler API; the machine
    # whose owner runs their own jobs has none.
    jobs = Job.objects.select_related("gpu__node")
    assert jobs.exists()
    assert not jobs.filter(gpu__node__name="carol-own-jobs").exists()
    alice = demo_account("alice").address
    assert Node.objects.filter(owner__username=alice).count() == 2


def test_restarted_fleet_reuses_its_machines(live_server, settings, tmp_path):
    settings.AGENT_SAMPLE_INTERVAL_S = 1
    for _ in range(2):
        fleet = Fleet(live_server.url, tmp_path / "demo")
        fleet.start()
        fleet.stop.set()
        for thread in fleet.threads:
            thread.join(timeout=30)
    assert Node.objects.count() == len(DEMO_MACHINES)


def test_demo_sign_in_only_exists_in_demo_runs(settings):
    settings.DEMO_FLEET = False
    client = Client()
    client.get("/auth/nonce")
    response = client.post(
        "/auth/demo",
        {"name": "alice"},
        content_type="application/json",
        headers={"X-CSRFToken": client.cookies["csrftoken"].value},
    )
    assert response.status_code == 404


def test_demo_sign_in_signs_in_as_the_demo_contributor(settings):
    settings.DEMO_FLEET = True
    settings.DEBUG = True
    client = Client()
    client.get("/auth/nonce")
    response = client.post(
        "/auth/demo",
        {"name": "bob"},
        content_type="application/json",
        headers={"X-CSRFToken": client.cookies["csrftoken"].value},
    )
    assert response.status_code == 200
    assert response.json()["address"] == demo_account("bob").address
    assert client.get("/api/v1/me").status_code == 200
