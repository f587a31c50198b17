"""The demo fleet enrolls and reports through the real HTTP API, attests its jobs, and answers
proof-of-GPU challenges, except its forged machine."""

from datetime import timedelta

import pytest
from django.test import Client

from contributors.models import GPU, Challenge, GpuFlag, Node, Sample, TelemetryBatch
from contributors.telemetry import store as ingest
from contributors.verification import challenges
from portal.demo import DEMO_MACHINES, Fleet, demo_account
from rewards.models import Job
from tests.support.processes import wait_for

pytestmark = [
    pytest.mark.processes,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_catalog"),
]


@pytest.mark.gpu_verification
def test_fleet_reports_every_gpu_attests_jobs_and_proves_its_gpus(live_server, settings, tmp_path):
    settings.AGENT_SAMPLE_INTERVAL_S = 1
    settings.AGENT_REPORT_INTERVAL_S = 1
    # The demo's challenge sizes (the Makefile's).
    settings.GPU_VERIFICATION_N = 128
    settings.GPU_VERIFICATION_MAX_ROUNDS = 2
    fleet = Fleet(live_server.url, tmp_path / "demo")
    forged = {m.name for m in DEMO_MACHINES if m.forged}
    try:
        fleet.start()
        total = sum(machine.gpus for machine in DEMO_MACHINES)
        honest = sum(m.gpus for m in DEMO_MACHINES if not m.forged)

        def every_gpu_reported_and_every_honest_one_proved():
            # Ingest and check in this process, as workers would: real workers are tested
            # elsewhere; this is about the fleet.
            for pk in TelemetryBatch.objects.filter(status="pending").values_list("pk", flat=True):
                ingest.ingest(pk)
            for pk in Challenge.objects.filter(status="revealed").values_list("pk", flat=True):
                challenges.check(pk)
            reported = GPU.objects.filter(last_sample_at__isnull=False).count() == total
            return reported and Challenge.objects.filter(status="passed").count() == honest

        wait_for(
            every_gpu_reported_and_every_honest_one_proved,
            timeout=90,
            message="not every demo GPU reported, or an honest one did not pass its challenge",
        )
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
    # The forged machine got its challenge and never committed: the sweep fails it.
    (waiting,) = Challenge.objects.filter(node__name__in=forged)
    assert waiting.status == "delivered"
    challenges.sweep(waiting.commit_deadline + timedelta(seconds=1))
    waiting.refresh_from_db()
    assert (waiting.status, waiting.reason) == ("failed", "no_answer")
    assert not Challenge.objects.filter(status="failed").exclude(node__name__in=forged).exists()


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
