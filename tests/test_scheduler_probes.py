"""Scheduler probes (POST /api/v1/scheduler/probes): ground truth for idle memory. A valid
successful probe caps what idle units count; a failed one holds the GPU out until a later
success; the endpoint refuses what no scheduler could have measured."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from contributors.models import Probe
from rewards.models import HeldOut, RewardEntry
from tests.support import rewards as support
from tests.support.agent_api import iso, nvml_uuid, scheduler_token
from tests.support.deep_json import deep_bodies

pytestmark = pytest.mark.django_db

PROBES = "/api/v1/scheduler/probes"
GIB = 1024


def probe(token: str, **body):
    return Client().post(
        PROBES, body, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )


def idle_gib_seconds(epoch, gpu_uuid: str) -> Decimal:
    entry = RewardEntry.objects.get(epoch=epoch, gpu__uuid=gpu_uuid, kind="idle")
    return Decimal(entry.inputs["gib_seconds"])


def test_a_successful_probe_caps_idle_memory_and_a_failed_one_holds_the_gpu_out(alice):
    """Two identical H100s idle for an hour: the probed one counts 40 GiB, not 79.6."""
    capped, free = nvml_uuid("capped"), nvml_uuid("free")
    rig = support.Rig(alice, [support.gpu(capped, support.H100), support.gpu(free, support.H100)])
    start = support.epoch_start()
    token = scheduler_token()
    answer = probe(token, gpu_uuid=capped, at=iso(start), allocated_mib=40 * GIB, ok=True)
    assert answer.status_code == 201, answer.content
    assert answer.json()["allocated_mib"] == 40 * GIB
    rig.report(support.samples(capped, start) + support.samples(free, start))
    support.ingest_all()
    epoch = support.settle(start)
    assert idle_gib_seconds(epoch, capped) == 40 * 3600
    assert idle_gib_seconds(epoch, free) == Decimal(81559 * 3600) / GIB

    # The next hour the scheduler could not allocate on it: held out, the other earns it all.
    later = start + timedelta(hours=1)
    assert (
        probe(token, gpu_uuid=capped, at=iso(later), allocated_mib=0, ok=False).status_code == 201
    )
    rig.report(support.samples(capped, later) + support.samples(free, later))
    support.ingest_all()
    second = support.settle(later)
    held = HeldOut.objects.get(epoch=second)
    assert (held.gpu.uuid, held.reason) == (capped, HeldOut.Reason.PROBE_FAILED)
    assert RewardEntry.objects.get(epoch=second, kind="idle").amount_wei == support.IDLE_POOL


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"allocated_mib": -1}, "validation_failed"),
        ({"allocated_mib": 1.5}, "validation_failed"),
        ({"allocated_mib": True}, "validation_failed"),
        ({"ok": "yes"}, "validation_failed"),
        ({"at": "yesterday"}, "validation_failed"),
        ({"at": "+2h"}, "validation_failed"),
        ({"at": "-48h"}, "validation_failed"),
        ({"gpu_uuid": nvml_uuid("nobody")}, "unknown_gpu"),
        ({"gpu_uuid": ""}, "validation_failed"),
        ({"allocated_mib": 81560}, "implausible_probe"),
    ],
)
def test_what_no_scheduler_measured_is_refused_with_a_code(alice, body, code):
    gpu_uuid = nvml_uuid("probed")
    support.Rig(alice, [support.gpu(gpu_uuid, support.H100)])
    now = timezone.now()
    fields = {"gpu_uuid": gpu_uuid, "at": iso(now), "allocated_mib": 1024, "ok": True}
    if body.get("at") in ("+2h", "-48h"):
        body = {"at": iso(now + timedelta(hours=2 if body["at"] == "+2h" else -48))}
    response = probe(scheduler_token(), **{**fields, **body})
    assert response.status_code == 400, response.content
    assert response.json()["error"] == code
    assert not Probe.objects.exists()


def test_probes_need_a_scheduler_token(alice):
    gpu_uuid = nvml_uuid("probed")
    support.Rig(alice, [support.gpu(gpu_uuid, support.H100)])
    body = {"gpu_uuid": gpu_uuid, "at": iso(timezone.now()), "allocated_mib": 1, "ok": True}
    assert Client().post(PROBES, body, content_type="application/json").status_code == 401
    assert probe("ots_not-a-token", **body).status_code == 401
    assert not Probe.objects.exists()


@pytest.mark.parametrize("shape", ["open arrays", "closed arrays", "open objects"])
def test_deep_and_oversized_probes_are_refused(alice, shape):
    token = scheduler_token()
    deep = probe_raw(token, deep_bodies(4000)[shape])
    assert (deep.status_code, deep.json()["error"]) == (400, "invalid_json")
    large = probe_raw(token, json.dumps({"gpu_uuid": "x" * 5000}))
    assert large.status_code == 413
    assert not Probe.objects.exists()


def probe_raw(token: str, body):
    return Client().post(
        PROBES, body, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )
