"""/network/ and GET /api/v1/network through HTTP: the figures the beat task computes from
machines that enrolled and reported through the agent API, jobs the scheduler attested and
epochs settlement paid, served without a query of their own whatever the network's size."""

import json
import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contributors.models import GPU, Challenge, Node
from portal.schedule import beat_schedule
from rewards import manifests
from rewards.models import Epoch
from rewards.public import network as network_figures
from rewards.public import store
from tests.support.accounts import Account, grow, small_account
from tests.support.agent_api import nvml_uuid
from tests.support.public import network, run_beat_task
from tests.support.rewards import (
    COMPUTE_POOL,
    H100,
    IDLE_POOL,
    RTX_4090,
    Rig,
    attest,
    epoch_start,
    gpu,
    ingest_all,
    samples,
    settle,
)
from tests.support.siwe import signed_in

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded_catalog")]

# An agent's own name for a model no catalog row knows: markup, and a plotly.js template.
ODD_NAME = "Acme <b>Tensor</b> %{meta} Card"
ODD = {"name": ODD_NAME, "memory_total_mib": 16384}
A, B, C, D, E = (nvml_uuid(f"net-{label}") for label in "abcde")


@pytest.fixture
def fleet(alice, bob):
    """alice: a machine with an H100 that runs an attested job, an H100 with 40,000 MiB
    committed and an RTX 4090 she took out of the network. bob: a machine with a model the
    catalog does not know, and a machine that enrolled but never reported. One epoch settled,
    then every reporting GPU reports live."""
    alice_rig = Rig(alice, [gpu(A, H100), gpu(B, H100), gpu(C, RTX_4090)])
    bob_rig = Rig(bob, [gpu(D, ODD)])
    Rig(bob, [gpu(E, H100)])  # enrolled, silent: offline
    owner = signed_in(alice)
    assert owner.post(f"/gpus/{B}/settings", {"committed_memory_mib": "40000", "enabled": "on"})
    assert owner.post(f"/gpus/{C}/settings", {"committed_memory_mib": ""}).status_code == 302

    start = epoch_start(3)
    attest("net-job", A, start, start + timedelta(hours=1))
    every = range(0, 3600, 30)
    alice_rig.report(
        samples(A, start, seconds=every, util=50, used=40000, job="net-job")
        + samples(B, start, seconds=every, used=1024)
        + samples(C, start, seconds=every, used=0, total=RTX_4090["memory_total_mib"])
    )
    bob_rig.report(samples(D, start, seconds=every, used=2048, total=16384))
    ingest_all()
    settle(start)

    live = timezone.now() - timedelta(seconds=20)
    alice_rig.report(
        samples(A, live, seconds=range(1), util=80, used=30000)
        + samples(B, live, seconds=range(1), used=50000)
        + samples(C, live, seconds=range(1), used=0, total=RTX_4090["memory_total_mib"])
    )
    bob_rig.report(samples(D, live, seconds=range(1), used=4096, total=16384))
    ingest_all()
    return start


def decided(gpu_row, status: str, hours_ago: float) -> Challenge:
    at = timezone.now() - timedelta(hours=hours_ago)
    return Challenge.objects.create(
        gpu=gpu_row, node=gpu_row.node, trigger=Challenge.Trigger.PERIODIC,
        claimed_name=gpu_row.name, claimed_memory_mib=gpu_row.memory_total_mib, n=128, rounds=1,
        checks=16, expected_ops_per_s=1e12, commit_within_s=30, status=status, issued_at=at,
        decided_at=at,
    )  # fmt: skip


# --- the figures --------------------------------------------------------------------------------


def test_the_figures_are_what_the_agents_reported_and_settlement_paid(fleet):
    run_beat_task()
    body = network()

    # Online: A and B (C is out of the network), D; bob's silent machine is not.
    assert body["online"] == {
        "gpus": 3,
        "machines": 2,
        "committed_mib": 81559 + 40000 + 16384,
        # min(committed, total − used) at the last report of each.
        "free_mib": (81559 - 30000) + min(40000, 81559 - 50000) + (16384 - 4096),
        "online_within_s": 90,
    }
    # Models by the catalog's names: the agent's own text is shown nowhere.
    assert body["models"] == [
        {"model": "H100", "gpus": 2},
        {"model": network_figures.UNRATED_MODELS, "gpus": 1},
    ]
    epoch = Epoch.objects.get(start=fleet)
    (paid,) = body["epochs"]
    assert paid["start"] == fleet.isoformat().replace("+00:00", "Z")
    # Both pools paid out to the wei, as settlement recorded them.
    assert (int(paid["compute_paid_wei"]), int(paid["idle_paid_wei"])) == (COMPUTE_POOL, IDLE_POOL)
    assert (epoch.compute_paid_wei, epoch.idle_paid_wei) == (COMPUTE_POOL, IDLE_POOL)
    assert paid["gpus_paid"] == epoch.gpu_count == 3
    assert paid["held_out"] == {
        "disabled": 1, "flagged": 0, "unverified": 0, "verification_failed": 0,
        "probe_failed": 0,
    }  # fmt: skip
    assert {row["reason"]: row["gpus"] for row in body["held_out"]}["disabled"] == 1
    assert body["manifests"] == []


def test_the_verification_pass_rate_is_of_the_last_24_hours(fleet):
    gpus = {g.uuid: g for g in GPU.objects.select_related("node")}
    for hours_ago in (1, 5, 23):
        decided(gpus[A], Challenge.Status.PASSED, hours_ago)
    decided(gpus[D], Challenge.Status.FAILED, 2)
    decided(gpus[B], Challenge.Status.PASSED, 25)  # older than a day
    decided(gpus[B], Challenge.Status.CANCELLED, 1)  # replaced: neither passed nor failed

    run_beat_task()
    verification = network()["verification"]

    assert (verification["passed"], verification["failed"]) == (3, 1)
    assert verification["pass_rate"] == 0.75
    page = Client().get("/network/").content.decode()
    assert re.search(r'id="pass-rate">75\.0 %<', page)


def test_the_page_shows_the_same_figures_with_its_charts_as_data(fleet):
    run_beat_task()
    page = Client().get("/network/")

    assert page.status_code == 200
    html = page.content.decode()
    assert re.search(r'id="gpus-online">3<', html)
    assert re.search(r'id="machines-online">2<', html)
    assert re.search(r'id="memory-committed">134\.7 GiB<', html)  # 137943 MiB
    for figure in ("models-figure", "payouts-figure", "held-out-figure"):
        data = re.search(
            rf'<script type="application/json" id="{figure}">(.*?)</script>', html, re.S
        )
        assert json.loads(data.group(1))["data"], figure
    payouts = json.loads(re.search(r'id="payouts-figure">(.*?)</script>', html, re.S).group(1))[
        "data"
    ]
    # Exact OMNIT as decimal strings, never floats.
    assert [trace["y"] for trace in payouts] == [["1000.000000"], ["250.000000"]]
    # No text an agent chose reaches the public page: models are named by the catalog.
    assert "Acme" not in html and "%{meta}" not in html
    assert 'id="manifests-none"' in html
    assert (
        '<a href="/network/">Network</a>' in html and '<a href="/leaderboard/">Leaderboard' in html
    )


def test_each_recent_epoch_shows_its_published_manifest_digest(fleet):
    epoch = Epoch.objects.get(start=fleet)
    run_beat_task()
    assert network()["manifests"] == []  # not published yet: the spot says so
    assert 'id="manifests-none"' in Client().get("/network/").content.decode()

    published = manifests.publish(epoch.pk)  # what the task after settlement does
    run_beat_task()

    (row,) = network()["manifests"]
    assert row == {
        "epoch_start": fleet.isoformat().replace("+00:00", "Z"),
        "sha256": published.sha256,
        "url": f"/api/v1/epochs/{epoch.pk}/manifest.json",
    }
    assert Client().get(row["url"]).status_code == 200
    assert published.sha256 in Client().get("/network/").content.decode()


# --- served from what the beat task stored ------------------------------------------------------


def count_queries(url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert Client().get(url).status_code == 200, url
    return len(queries)


PUBLIC = ("/network/", "/api/v1/network", "/leaderboard/", "/api/v1/leaderboard?period=7d&by=idle")


def test_pages_and_api_take_the_same_queries_for_a_small_and_a_larger_network(alice, bob):
    account = small_account(alice)
    with CaptureQueriesContext(connection) as computing:
        run_beat_task()
    small = {url: count_queries(url) for url in PUBLIC}

    grow(account)
    more = Account(bob, "b")  # another contributor: 6 GPUs online, a month of uptime
    more.add_gpus(6)
    more.report_live()
    more.fill_hour_rollups(30)
    ingest_all()
    assert GPU.objects.count() == 18
    cache.clear()  # from nothing, as the first run was (it keeps the days that are final)
    with CaptureQueriesContext(connection) as computing_more:
        run_beat_task()
    big = {url: count_queries(url) for url in PUBLIC}

    # Requests read what the task stored: no query at all, whatever the size.
    assert big == small == dict.fromkeys(PUBLIC, 0)
    # And the task itself is set-based: as many queries for 18 GPUs as for 2.
    assert len(computing_more) == len(computing)
    assert len(computing) <= 20


def test_a_new_deployment_asks_a_worker_once_and_never_computes_in_a_request(fleet, parking_queue):
    """Nothing computed yet: the first request queues the beat task's computation and says
    "computing"; requests within the minute queue nothing more; once a worker ran it, the
    figures are served without a query."""
    assert cache.get(store.NETWORK_KEY) is None

    for _ in range(3):
        response = Client().get("/api/v1/network")
        assert (response.status_code, response.json()["error"]) == (503, "computing")
    assert cache.get(store.NETWORK_KEY) is None  # no request computed them
    assert parking_queue() == 1  # one computation queued for a worker

    run_beat_task()  # what that worker does
    assert network()["online"]["gpus"] == 3
    assert count_queries("/api/v1/network") == 0


def test_while_another_process_computes_the_api_says_so_and_the_page_waits(fleet):
    cache.add(store.LOCK_KEY, 1, timeout=60)

    response = Client().get("/api/v1/network")
    assert response.status_code == 503
    assert response.json()["error"] == "computing"
    assert int(response["Retry-After"]) > 0
    page = Client().get("/network/")
    assert page.status_code == 200
    assert 'id="computing"' in page.content.decode()


def test_the_figures_move_only_when_the_task_runs_again(fleet):
    run_beat_task()
    Node.objects.update(revoked_at=timezone.now())

    assert network()["online"]["gpus"] == 3  # what was stored
    run_beat_task()
    assert network()["online"] == {**network()["online"], "gpus": 0, "machines": 0}


def test_beat_computes_them_every_public_stats_every_s(settings):
    settings.PUBLIC_STATS_EVERY_S = 45
    entry = beat_schedule()["compute-public-stats"]

    assert entry["task"] == "rewards.compute_public_stats"
    assert entry["schedule"] == 45.0
    assert entry["options"]["expires"] == 45.0


def test_the_api_is_documented_as_public_with_its_parameters(client):
    schema = client.get("/api/schema/?format=json").json()
    network_op = schema["paths"]["/api/v1/network"]["get"]
    board_op = schema["paths"]["/api/v1/leaderboard"]["get"]

    assert network_op.get("security", []) in ([], [{}])  # no sign-in
    assert {"200", "503"} <= set(network_op["responses"])
    assert {"200", "400", "503"} <= set(board_op["responses"])
    params = {p["name"]: p for p in board_op["parameters"]}
    assert params["period"]["schema"]["enum"] == ["24h", "7d", "30d"]
    assert params["by"]["schema"]["enum"] == ["total", "compute", "idle", "uptime"]
