"""Verifiable epochs (rewards.manifests, rewards/api/epochs.py, rewards/verify_epoch.py): every
settled epoch's manifest is recomputed to the wei by the standalone verifier, run as anyone
would run it; a tampered manifest fails naming the first difference; the manifest never changes
once published and its digest is the statement's; the public API answers anyone in a bounded
number of queries; GPUs are named by stable pseudonyms that only their owner can map back."""

import csv
import hashlib
import io
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from contributors.models import GPU, Node, Sample
from contributors.signin import contributor_for_sign_in
from rewards import manifests, settlement
from rewards.models import Epoch, EpochManifest, GpuModel, Job, RewardEntry, RewardPolicy
from rewards.tasks import publish_epoch_manifests
from tests.support.agent_api import nvml_uuid
from tests.support.siwe import ALICE, BOB, signed_in

pytestmark = pytest.mark.django_db

VERIFIER = Path(django_settings.BASE_DIR) / "rewards" / "verify_epoch.py"
START = datetime(2026, 3, 2, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
MODELS = {
    "h100": ("NVIDIA H100 80GB HBM3", 81559),  # weight 3
    "4090": ("NVIDIA GeForce RTX 4090", 24564),  # weight 0.53
    "unrated": ("Acme Mystery Accelerator", 16384),  # the catalog's default weight
    "zero": ("Zero-rated Test Card", 8192),  # weight 0: busy, yet no compute units
}


# --- a world settled through the real settlement ----------------------------------------------


def policy(compute_pool: int = 2**70 + 7, idle_pool: int = 2**64 + 3, max_gap_s: int = 30):
    """Pools past 2^63 (and odd, so leftover wei are handed out), 1-hour epochs, no grace."""
    RewardPolicy.objects.create(
        effective_from=datetime(1970, 1, 1, tzinfo=UTC), epoch_length_s=3600, grace_s=0,
        max_gap_s=max_gap_s, compute_pool_wei=compute_pool, idle_pool_wei=idle_pool,
    )  # fmt: skip
    GpuModel.objects.get_or_create(pattern="zero-rated", defaults={"weight": Decimal(0)})


def add_gpu(owner, label: str, model: str = "h100", **fields) -> GPU:
    node, _ = Node.objects.get_or_create(
        owner=owner, name=f"rig-{owner.pk}",
        defaults={"token_prefix": f"p{owner.pk}", "token_hash": f"h{owner.pk}"},
    )  # fmt: skip
    name, total = MODELS[model]
    return GPU.objects.create(
        node=node, uuid=nvml_uuid(label), name=name, memory_total_mib=total,
        first_seen_at=START - timedelta(days=1), **fields,
    )  # fmt: skip


def report(gpu: GPU, start: datetime, offsets, util=50.0, used: int = 1024, job: str = ""):
    Sample.objects.bulk_create(
        Sample(gpu=gpu, ts=start + timedelta(seconds=s), utilization_gpu_pct=util,
               memory_used_mib=used, memory_total_mib=gpu.memory_total_mib, job_id=job)
        for s in offsets
    )  # fmt: skip


def settle(start: datetime = START, publish: bool = True) -> Epoch:
    """Settle the epoch at `start`; with `publish`, then run the task a worker runs after
    settlement (requests never build manifests)."""
    # The samples were written straight into the table: accumulate them as a drain would.
    call_command("rebuild_usage", "--from", start.isoformat(), stdout=io.StringIO())
    epoch = settlement.settle(settlement.window_from(start), now=start + 2 * HOUR)
    assert epoch is not None
    if publish:
        publish_epoch_manifests.apply()
    return epoch


def fleet(size: int, start: datetime = START, publish: bool = True) -> Epoch:
    """`size` GPUs of two contributors (the same ones in every epoch), alternately busy and
    idle, one of them disabled, report the epoch at `start`, and it is settled."""
    alice, bob = contributor_for_sign_in(ALICE.address), contributor_for_sign_in(BOB.address)
    for i in range(size):
        gpu = GPU.objects.filter(uuid=nvml_uuid(f"fleet-{i}")).first() or add_gpu(
            alice if i % 2 else bob, f"fleet-{i}", "h100" if i % 3 else "4090"
        )
        job = ""
        if i % 2:
            job = f"job-{i}-{start.isoformat()}"
            Job.objects.create(job_id=job, gpu=gpu, kind="training", started_at=start,
                               ended_at=start + HOUR / 2)  # fmt: skip
        report(gpu, start, range(0, 3600, 600), util=10.0 + i, used=100 * i, job=job)
    GPU.objects.filter(uuid=nvml_uuid("fleet-0")).update(enabled=False)
    return settle(start, publish)


def get_manifest(epoch_id, client: Client | None = None) -> bytes:
    response = (client or Client()).get(f"/api/v1/epochs/{epoch_id}/manifest.json")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return response.content


def verify(body: bytes, *args: str) -> subprocess.CompletedProcess:
    """The verifier, run as anyone runs it: `python rewards/verify_epoch.py file`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "manifest.json"
        path.write_bytes(body)
        return subprocess.run(
            [sys.executable, str(VERIFIER), str(path), *args],
            capture_output=True, text=True, timeout=60, check=False,
            cwd=folder, env={"PATH": "/usr/bin:/bin"},  # nothing of the portal's environment
        )  # fmt: skip


# --- the verifier agrees with settlement, to the wei --------------------------------------------

UTILIZATIONS = st.sampled_from([None, 0.0, 12.5, 33.3, 87.5, 99.9, 100.0])
jobs = st.tuples(st.integers(-600, 3000), st.integers(1, 4000))  # (start, length) in seconds


@st.composite
def epochs(draw):
    """A random epoch: 2 to 6 GPUs of different models and owners, random samples (gaps, jobs
    named or not, null utilization), committed memory, some disabled, maybe a MIG instance and
    maybe two identical GPUs, whose equal remainders settlement breaks by uuid."""
    gpus = []
    for index in range(draw(st.integers(2, 6))):
        gpus.append(
            {
                "model": draw(st.sampled_from(sorted(MODELS))),
                "owner": draw(st.sampled_from(["alice", "bob"])),
                "enabled": draw(st.integers(0, 5)) > 0,
                "committed": draw(st.one_of(st.none(), st.integers(0, 8192))),
                "offsets": sorted(draw(st.sets(st.integers(-40, 3640), min_size=3, max_size=30))),
                "util": [draw(UTILIZATIONS) for _ in range(30)],
                "used": draw(st.integers(0, 8192)),
                "job": draw(jobs) if draw(st.integers(0, 3)) else None,  # mostly busy
                "label": f"h{index}-{draw(st.integers(0, 10**6))}",
            }
        )  # fmt: skip
    twins = draw(st.booleans())
    if twins:  # the second GPU reports exactly what the first does
        gpus[1] = {**gpus[0], "owner": gpus[1]["owner"], "label": gpus[1]["label"]}
    mig = draw(st.booleans())
    return {"gpus": gpus, "mig": mig, "pools": draw(st.tuples(st.integers(0, 2**80),
                                                               st.integers(0, 2**70)))}  # fmt: skip


def make(world: dict) -> Epoch:
    policy(*world["pools"])
    owners = {
        "alice": contributor_for_sign_in(ALICE.address),
        "bob": contributor_for_sign_in(BOB.address),
    }
    for spec in world["gpus"]:
        gpu = add_gpu(owners[spec["owner"]], spec["label"], spec["model"],
                      enabled=spec["enabled"], committed_memory_mib=spec["committed"])  # fmt: skip
        job = ""
        if spec["job"] is not None:
            job = f"job-{spec['label']}"
            began, length = spec["job"]
            Job.objects.create(job_id=job, gpu=gpu, kind="training",
                               started_at=START + timedelta(seconds=began),
                               ended_at=START + timedelta(seconds=began + length))  # fmt: skip
        Sample.objects.bulk_create(
            Sample(gpu=gpu, ts=START + timedelta(seconds=s), utilization_gpu_pct=util,
                   memory_used_mib=min(spec["used"], gpu.memory_total_mib),
                   memory_total_mib=gpu.memory_total_mib, job_id=job if s % 3 else "")
            for s, util in zip(spec["offsets"], spec["util"], strict=False)
        )  # fmt: skip
        if world["mig"] and spec is world["gpus"][0]:
            instance = GPU.objects.create(
                node=gpu.node, uuid=nvml_uuid(spec["label"], "MIG"), name=gpu.name,
                memory_total_mib=gpu.memory_total_mib // 2, mig_parent=gpu,
            )  # fmt: skip
            Job.objects.create(job_id=f"mig-{spec['label']}", gpu=instance, kind="inference",
                               started_at=START, ended_at=START + HOUR)  # fmt: skip
            report(instance, START, range(5, 3600, 20), util=42.5, job=f"mig-{spec['label']}")
    return settle()


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(epochs())
def test_the_verifier_recomputes_every_settled_epoch_to_the_wei(world):
    with transaction.atomic():
        epoch = make(world)
        event(f"held out: {epoch.held_out_count > 0}")
        event(f"compute paid: {epoch.compute_paid_wei > 0}, idle paid: {epoch.idle_paid_wei > 0}")
        body = get_manifest(epoch.pk)
        result = verify(body)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("OK ")

        # What it agreed with is the ledger: every entry's wei, under its GPU's pseudonym.
        manifest = json.loads(body)
        listed = {
            (gpu["gpu"], kind): int(gpu[kind]["amount_wei"])
            for gpu in manifest["gpus"]
            for kind in ("compute", "idle")
            if gpu[kind] is not None
        }
        ledger = {
            (manifests.pseudonym(e.gpu.uuid), e.kind): e.amount_wei
            for e in RewardEntry.objects.filter(epoch=epoch).select_related("gpu")
        }
        assert listed == ledger
        held = {g["gpu"] for g in manifest["gpus"] if g["held_out"]}
        assert len(held) == epoch.held_out_count
        assert int(manifest["totals"]["paid_wei"]) == epoch.compute_paid_wei + epoch.idle_paid_wei
        transaction.set_rollback(True)


def test_equal_remainders_go_by_uuid_as_settlement_gives_them():
    """Three identical GPUs and a pool of 10 wei: 3 each and the leftover wei to the smallest
    uuid, which the verifier finds from the manifest's order alone."""
    policy(compute_pool=0, idle_pool=10)
    alice = contributor_for_sign_in(ALICE.address)
    gpus = [add_gpu(alice, f"twin-{i}") for i in range(3)]
    for gpu in gpus:
        report(gpu, START, range(0, 3600, 10))
    epoch = settle()
    manifest = json.loads(get_manifest(epoch.pk))
    first = min(gpus, key=lambda g: g.uuid)
    assert [g["idle"]["amount_wei"] for g in manifest["gpus"]] == ["4", "3", "3"]
    assert manifest["gpus"][0]["gpu"] == manifests.pseudonym(first.uuid)
    assert verify(json.dumps(manifest).encode()).returncode == 0

    # Listed in another order, the same amounts no longer follow.
    manifest["gpus"].reverse()
    result = verify(json.dumps(manifest).encode())
    assert result.returncode == 1
    second_to_last = manifest["gpus"][0]["gpu"]
    assert f"gpu {second_to_last}: idle.amount_wei: expected 4, found 3" in result.stdout


def test_epochs_settled_before_entries_kept_exact_sums_still_verify():
    """Entries written before `covered_seconds` and `utilization_pct_seconds` were recorded:
    the sum comes back from units / weight, or from the average where the weight is 0."""
    policy()
    alice = contributor_for_sign_in(ALICE.address)
    for label, model, util in (
        ("old-a", "h100", 33.3),
        ("old-b", "zero", 87.5),
        ("old-c", "4090", 12.5),
    ):
        gpu = add_gpu(alice, label, model)
        Job.objects.create(job_id=f"job-{label}", gpu=gpu, kind="training", started_at=START,
                           ended_at=START + HOUR / 3)  # fmt: skip
        report(gpu, START, range(0, 3600, 10), util=util, job=f"job-{label}")
    epoch = settle(publish=False)
    for entry in RewardEntry.objects.filter(epoch=epoch):
        old = {k: v for k, v in entry.inputs.items()
               if k not in ("covered_seconds", "utilization_pct_seconds")}  # fmt: skip
        RewardEntry.objects.filter(pk=entry.pk).update(inputs=old)  # as stored back then
    publish_epoch_manifests.apply()  # published after the upgrade, from the old entries
    manifest = json.loads(get_manifest(epoch.pk))
    assert [g["covered_seconds"] for g in manifest["gpus"]] == [None] * 3
    computed = sorted(Decimal(g["compute"]["utilization_pct_seconds"]) for g in manifest["gpus"])
    assert computed == sorted(1200 * Decimal(str(u)) for u in (33.3, 87.5, 12.5))  # 20 min busy
    result = verify(manifests.canonical_bytes(manifest))
    assert result.returncode == 0, result.stdout


# --- a tampered manifest fails, naming the first difference -------------------------------------


@pytest.fixture
def settled():
    """A settled epoch of 8 GPUs (one held out) and its manifest, parsed."""
    policy()
    epoch = fleet(8)
    return json.loads(get_manifest(epoch.pk))


def paid(manifest: dict, kind: str) -> dict:
    return next(g for g in manifest["gpus"] if g[kind] is not None and g[kind]["amount_wei"] != "0")


def test_the_untouched_manifest_verifies(settled):
    result = verify(manifests.canonical_bytes(settled))
    assert result.returncode == 0, result.stdout
    assert "8 GPUs (1 held out)" in result.stdout


@pytest.mark.parametrize("kind", ["compute", "idle"])
def test_a_changed_wei_fails_naming_the_gpu(settled, kind):
    gpu = paid(settled, kind)
    was = int(gpu[kind]["amount_wei"])
    gpu[kind]["amount_wei"] = str(was + 1)
    gpu["amount_wei"] = str(int(gpu["amount_wei"]) + 1)  # consistent within the GPU
    result = verify(manifests.canonical_bytes(settled))
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"DIFFERENCE: gpu {gpu['gpu']}: {kind}.amount_wei: expected {was}, found {was + 1}"
    )


def test_wei_moved_between_gpus_fails_at_the_first(settled):
    """The pool still adds up; the split does not."""
    a, b = [g for g in settled["gpus"] if g["idle"] is not None][:2]
    for gpu, change in ((a, 1), (b, -1)):
        gpu["idle"]["amount_wei"] = str(int(gpu["idle"]["amount_wei"]) + change)
        gpu["amount_wei"] = str(int(gpu["amount_wei"]) + change)
    result = verify(manifests.canonical_bytes(settled))
    assert result.returncode == 1
    assert result.stdout.startswith(f"DIFFERENCE: gpu {a['gpu']}: idle.amount_wei: expected ")


@pytest.mark.parametrize(
    ("kind", "key", "fails"),
    [
        ("compute", "weight", "compute.units"),
        ("compute", "utilization_pct_seconds", "compute.units"),
        ("compute", "busy_seconds", "compute.avg_utilization_pct"),
        ("idle", "mib_seconds", "idle.units"),
        ("idle", "idle_seconds", "idle.avg_available_mib"),
        ("idle", "units", "idle.units"),
    ],
)
def test_a_changed_input_fails_naming_the_gpu_and_field(settled, kind, key, fails):
    gpu = paid(settled, kind)
    gpu[kind][key] = str(Decimal(gpu[kind][key]) + Decimal("0.5"))
    result = verify(manifests.canonical_bytes(settled))
    assert result.returncode == 1
    assert result.stdout.startswith(f"DIFFERENCE: gpu {gpu['gpu']}: {fails}: expected "), (
        result.stdout
    )


def test_a_changed_pool_fails(settled):
    settled["policy"]["compute_pool_wei"] = str(int(settled["policy"]["compute_pool_wei"]) * 2)
    result = verify(manifests.canonical_bytes(settled))
    assert result.returncode == 1
    first = paid(settled, "compute")["gpu"]
    assert result.stdout.startswith(f"DIFFERENCE: gpu {first}: compute.amount_wei:")


def test_a_removed_gpu_fails(settled):
    count = len(settled["gpus"])
    removed = paid(settled, "compute")
    settled["gpus"].remove(removed)
    result = verify(manifests.canonical_bytes(settled))
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"DIFFERENCE: (totals): gpus: expected {count - 1}, found {count}"
    )

    # Counts fixed too: its units are missing from the pool's total.
    settled["totals"]["gpus"] -= 1
    settled["totals"]["paid_gpus"] -= 1
    result = verify(manifests.canonical_bytes(settled))
    assert result.returncode == 1
    assert result.stdout.startswith("DIFFERENCE: (totals): pools.compute.total_units: expected ")


def test_a_held_out_gpu_that_earned_fails(settled):
    held = next(g for g in settled["gpus"] if g["held_out"])
    held["amount_wei"] = "5"
    result = verify(manifests.canonical_bytes(settled))
    assert (
        result.stdout.strip() == f"DIFFERENCE: gpu {held['gpu']}: amount_wei: expected 0, found 5"
    )


def test_the_verifier_checks_the_digest_it_is_given(settled):
    body = manifests.canonical_bytes(settled)
    digest = hashlib.sha256(body).hexdigest()
    assert verify(body, "--sha256", digest).returncode == 0
    wrong = verify(body, "--sha256", "0" * 64)
    assert wrong.returncode == 1
    assert f"sha256: expected {'0' * 64}, found {digest}" in wrong.stdout
    # Pretty-printed, it is the same manifest: the digest is of its canonical form.
    pretty = json.dumps(settled, indent=2).encode()
    assert verify(pretty, "--sha256", digest).returncode == 0


def test_junk_is_an_error_not_a_crash():
    for body in (b"", b"[]", b"{}", b'{"format": "omnitensor-epoch-manifest/1"}'):
        result = verify(body)
        assert result.returncode == 1, body
        assert result.stdout.startswith(("ERROR", "DIFFERENCE")), result.stdout + result.stderr


# --- published once, the same bytes everywhere ----------------------------------------------------


def test_the_manifest_is_the_same_bytes_every_time_and_its_digest_is_on_the_statement():
    policy()
    epoch = fleet(4)
    first, second = get_manifest(epoch.pk), get_manifest(epoch.pk)
    assert first == second
    assert first == manifests.canonical_bytes(json.loads(first))
    digest = hashlib.sha256(first).hexdigest()
    assert manifests.manifest_digest(epoch) == digest
    assert EpochManifest.objects.get(epoch=epoch).sha256 == digest

    for wallet in (ALICE, BOB):
        page = signed_in(contributor_for_sign_in(wallet.address)).get("/rewards/")
        assert f'data-manifest-sha256="{digest}"' in page.content.decode()
    listed = Client().get("/api/v1/epochs").json()["epochs"]
    assert [(e["id"], e["sha256"]) for e in listed] == [(epoch.pk, digest)]


def test_a_published_manifest_never_changes():
    policy()
    epoch = fleet(3)
    before = get_manifest(epoch.pk)
    gpu = GPU.objects.get(uuid=nvml_uuid("fleet-2"))  # idle all epoch: no compute entry
    assert not RewardEntry.objects.filter(epoch=epoch, gpu=gpu, kind="compute").exists()
    # A later correction is a new ledger entry; the settlement it published stays as it was.
    RewardEntry.objects.create(
        epoch=epoch, gpu=gpu, contributor=gpu.node.owner, kind=RewardEntry.Kind.COMPUTE,
        units="0", amount_wei=12345, inputs={"correction": True},
    )  # fmt: skip
    assert get_manifest(epoch.pk) == before
    stored = EpochManifest.objects.get(epoch=epoch)
    stored.body = "{}"
    with pytest.raises(ValidationError):
        stored.save()
    assert manifests.publish(epoch.pk).body.encode() == before


def test_the_task_after_settlement_publishes_missing_manifests():
    policy()
    epochs = [
        fleet(2, START, publish=False),
        settle(START + HOUR, publish=False),
        settle(START + 2 * HOUR, publish=False),
    ]
    assert manifests.stored_digests(e.pk for e in epochs) == {}
    # Until then, the list says null and the files say why; no request builds one.
    listed = Client().get("/api/v1/epochs").json()["epochs"]
    assert [e["sha256"] for e in listed] == [None, None, None]
    waiting = Client().get(f"/api/v1/epochs/{epochs[0].pk}/manifest.json")
    assert (waiting.status_code, waiting.json()["error"]) == (404, "manifest_not_published")
    assert manifests.stored_digests(e.pk for e in epochs) == {}
    publish_epoch_manifests.apply()
    assert set(manifests.stored_digests(e.pk for e in epochs)) == {e.pk for e in epochs}
    assert manifests.publish_missing() == 0  # running twice publishes nothing again


# --- the public API ---------------------------------------------------------------------------


def test_anyone_can_list_and_download_without_signing_in():
    policy()
    epoch = fleet(3)
    client = Client()
    listed = client.get("/api/v1/epochs", HTTP_ACCEPT="text/html")
    assert listed.status_code == 200
    (row,) = listed.json()["epochs"]
    assert row["manifest_json"].endswith(f"/api/v1/epochs/{epoch.pk}/manifest.json")
    body = client.get(row["manifest_json"], HTTP_ACCEPT="text/csv")
    assert body.status_code == 200
    assert hashlib.sha256(body.content).hexdigest() == row["sha256"]

    response = client.get(row["manifest_csv"])
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    summary, table = text.split("\r\n\r\n")
    fields = dict(csv.reader(io.StringIO(summary)))
    assert fields["manifest_sha256"] == row["sha256"]
    manifest = json.loads(body.content)
    assert fields["compute_paid_wei"] == manifest["pools"]["compute"]["paid_wei"]
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [(r["gpu"], r["amount_wei"]) for r in rows] == [
        (g["gpu"], g["amount_wei"]) for g in manifest["gpus"]
    ]


def test_the_list_pages_newest_first():
    policy()
    epochs = [fleet(2, START), settle(START + HOUR), settle(START + 2 * HOUR)]
    page = Client().get("/api/v1/epochs", {"limit": 2}).json()
    assert [e["id"] for e in page["epochs"]] == [epochs[2].pk, epochs[1].pk]
    older = Client().get(page["next"]).json()
    assert [e["id"] for e in older["epochs"]] == [epochs[0].pk]
    assert Client().get("/api/v1/epochs", {"limit": 0}).status_code == 400
    assert Client().get("/api/v1/epochs", {"cursor": "junk"}).json()["error"] == "invalid_cursor"


@pytest.mark.parametrize(
    "epoch_id", ["0", "999999", "abc", "-1", "1.5", "1e3", "99999999999999999999999999", "٣"]
)
@pytest.mark.parametrize("suffix", ["json", "csv"])
def test_unknown_or_junk_ids_are_404(epoch_id, suffix):
    response = Client().get(f"/api/v1/epochs/{epoch_id}/manifest.{suffix}")
    assert response.status_code == 404
    assert response.json()["error"] == "epoch_not_found"


def test_an_epoch_being_settled_has_no_manifest():
    epoch = Epoch.objects.create(
        start=START, end=START + HOUR, grace_s=0, max_gap_s=30, compute_pool_wei=1,
        idle_pool_wei=1,
    )  # fmt: skip
    assert epoch.status == Epoch.Status.SETTLING
    assert Client().get(f"/api/v1/epochs/{epoch.pk}/manifest.json").status_code == 404
    assert manifests.manifest_digest(epoch) is None
    assert Client().get("/api/v1/epochs").json()["epochs"] == []


def queries(url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = Client().get(url)
        assert response.status_code == 200, url
        if response.streaming:
            b"".join(response.streaming_content)
    return len(captured)


def test_queries_per_request_do_not_grow_with_the_epoch():
    policy(max_gap_s=600)
    counts = []
    for size, start in ((5, START), (50, START + HOUR)):
        epoch = fleet(size, start)
        assert epoch.gpu_count + epoch.held_out_count == size
        base = f"/api/v1/epochs/{epoch.pk}/manifest"
        counts.append({"json": queries(f"{base}.json"), "csv": queries(f"{base}.csv")})
    assert counts[0] == counts[1]
    assert counts[1]["json"] == counts[1]["csv"] == 1
    assert queries("/api/v1/epochs?limit=24") <= 2


# --- pseudonyms ---------------------------------------------------------------------------------


def test_pseudonyms_are_stable_across_epochs_and_hide_the_uuid():
    policy()
    first, second = fleet(4, START), fleet(6, START + HOUR)
    bodies = [get_manifest(e.pk) for e in (first, second)]
    names = [[g["gpu"] for g in json.loads(b)["gpus"]] for b in bodies]
    uuids = sorted(GPU.objects.values_list("uuid", flat=True))
    assert names[1] == [manifests.pseudonym(u) for u in uuids]
    assert len(set(names[1])) == len(uuids) == 6
    assert set(names[0]) < set(names[1])  # the same GPUs, the same names, and two more
    for uuid in uuids:
        for part in (uuid, uuid.removeprefix("GPU-"), uuid.split("-")[1], uuid.split("-")[-1]):
            assert part.encode() not in bodies[0] + bodies[1]
    # Keyed: another key (MANIFEST_PSEUDONYM_KEY) gives other names.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(django_settings, "MANIFEST_PSEUDONYM_KEY", "another key altogether")
        assert manifests.pseudonym(uuids[0]) != names[0][0]


def test_a_statement_maps_its_own_gpus_to_their_pseudonyms_only():
    policy()
    epoch = fleet(4)
    get_manifest(epoch.pk)
    alice, bob = contributor_for_sign_in(ALICE.address), contributor_for_sign_in(BOB.address)
    pages = {who: signed_in(who).get("/rewards/").content.decode() for who in (alice, bob)}
    for who, other in ((alice, bob), (bob, alice)):
        own = GPU.objects.filter(node__owner=who)
        others = GPU.objects.filter(node__owner=other)
        assert own.exists() and others.exists()
        for gpu in own:
            assert f'data-pseudonym="{manifests.pseudonym(gpu.uuid)}"' in pages[who]
        for gpu in others:
            assert manifests.pseudonym(gpu.uuid) not in pages[who]


# --- the documented schema ----------------------------------------------------------------------


def openapi_to_json_schema(node):
    """OpenAPI 3.0's `nullable` as JSON Schema's null type, so jsonschema can check a body."""
    if isinstance(node, list):
        return [openapi_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: openapi_to_json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def test_a_real_manifest_matches_its_documented_schema(settled):
    schema = Client().get("/api/schema/", {"format": "json"}).json()
    components = openapi_to_json_schema(schema["components"])
    validator = jsonschema.Draft7Validator(
        {"$ref": "#/components/schemas/EpochManifest", "components": components}
    )
    validator.validate(settled)
    held = next(g for g in settled["gpus"] if g["held_out"])
    held["held_out"] = "bored"
    assert not validator.is_valid(settled)
