"""Proof of GPU through the real agent API (agent/PROOF.md): an honest agent passes and earns;
every way of not doing the work is held out with its reason; every misuse of the endpoints is
a 4xx with a code."""

import json
import uuid
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from omnitensor_agent.proof import Solution

from contributors.models import GPU, Challenge, Exemption
from contributors.tasks import check_challenge
from contributors.verification import challenges
from rewards.models import HeldOut, RewardEntry
from tests.support import rewards as support
from tests.support.agent_api import TELEMETRY, Agent, batch, enroll, h100, sample
from tests.support.deep_json import deep_bodies
from tests.support.prover import COMMIT, REVEAL, honest, reveal_rows
from tests.support.siwe import signed_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gpu_verification]


@pytest.fixture(autouse=True)
def _demo_sizes(settings):
    """Challenges of the demo's size: NumPy solves them in milliseconds."""
    settings.GPU_VERIFICATION_N = 64
    settings.GPU_VERIFICATION_MAX_ROUNDS = 3
    settings.GPU_VERIFICATION_CHECKS = 4


def report(agent: Agent, gpu_uuid: str, start) -> None:
    """Half an hour of idle samples from `start`."""
    body = batch(support.samples(gpu_uuid, start, seconds=range(0, 1800, 10)))
    response = agent.send(body)
    assert response.status_code == 202, response.content
    assert not response.json()["rejected"], response.content


def delivered(agent: Agent) -> list[dict]:
    """The challenges a report's answer carries (a report with no samples)."""
    response = agent.send(batch([]))
    assert response.status_code == 202, response.content
    return response.json().get("challenges", [])


def commit(agent, challenge: dict, root: str, elapsed_s: float = 0.01):
    url = COMMIT.format(id=challenge["challenge_id"])
    body = {"root": root, "elapsed_s": elapsed_s}
    return agent.client.post(url, body, content_type="application/json", headers=agent.auth())


def reveal(agent, challenge: dict, rows: list[dict]):
    url = REVEAL.format(id=challenge["challenge_id"])
    return agent.client.post(
        url, {"rows": rows}, content_type="application/json", headers=agent.auth()
    )


def answer(agent, challenge: dict, tamper=None, forge=None) -> Challenge:
    """Solve (honestly, unless `forge(solution)` makes another), commit, reveal (after
    `tamper(rows)`), run the check as the worker would; the challenge as decided."""
    solution = honest(challenge)
    if forge:
        solution = forge(solution)
    committed = commit(agent, challenge, solution.root.hex())
    assert committed.status_code == 200, committed.content
    rows = reveal_rows(solution, committed.json()["reveal"])
    if tamper:
        tamper(rows)
    revealed = reveal(agent, challenge, rows)
    assert revealed.status_code == 202, revealed.content
    pk = Challenge.objects.get(public_id=challenge["challenge_id"]).pk
    check_challenge(pk)
    return Challenge.objects.get(pk=pk)


@pytest.fixture
def rig(alice):
    agent = Agent(enroll(alice, [h100("rig")]))
    (challenge,) = delivered(agent)
    return agent, challenge


def test_an_honest_agent_passes_and_its_gpu_earns(alice, rig):
    agent, challenge = rig
    assert challenge["gpu_uuid"] == h100("rig")["uuid"]
    assert challenge["n"] == 64 and 1 <= challenge["rounds"] <= 3
    decided = answer(agent, challenge)
    assert decided.status == Challenge.Status.PASSED, decided.detail
    assert decided.trigger == Challenge.Trigger.REGISTERED
    assert decided.measured_ops_per_s > 0
    # Nothing waits any more: the next answer carries no challenge.
    assert delivered(agent) == []

    start = support.epoch_start()
    gpu = GPU.objects.get(uuid=challenge["gpu_uuid"])
    Challenge.objects.filter(pk=decided.pk).update(decided_at=start)
    report(agent, challenge["gpu_uuid"], start)
    support.ingest_all()
    epoch = support.settle(start)
    entries = RewardEntry.objects.filter(epoch=epoch, gpu=gpu)
    assert entries.filter(kind=RewardEntry.Kind.IDLE, amount_wei__gt=0).exists()
    assert not HeldOut.objects.filter(epoch=epoch).exists()


def test_a_gpu_that_never_passed_is_held_out_as_unverified(alice):
    agent = Agent(enroll(alice, [h100("lazy")]))
    start = support.epoch_start()
    report(agent, h100("lazy")["uuid"], start)
    support.ingest_all()
    epoch = support.settle(start)
    held = HeldOut.objects.get(epoch=epoch)
    assert held.reason == HeldOut.Reason.UNVERIFIED
    assert "omnitensor-agent verify" in held.detail
    assert not RewardEntry.objects.filter(epoch=epoch).exists()
    # The statement explains it to the owner.
    entries = support.rewards_of(alice)["entries"]
    assert [e["reason"] for e in entries if e["kind"] == "held_out"] == ["unverified"]


def _made_up_rows(solution):
    """Rows the GPU never computed, in a tree built from them: every path is fine, no row is."""
    return Solution.from_digests(solution.digests ^ np.uint64(1), elapsed_s=solution.elapsed_s)


def _bend_path(rows):
    rows[0]["path"][0] = "00" * 32


@pytest.mark.parametrize(
    ("forge", "tamper", "reason"),
    [
        (_made_up_rows, None, Challenge.Reason.WRONG_ROW),
        (None, _bend_path, Challenge.Reason.BAD_PATH),
    ],
)
def test_a_wrong_row_or_a_bad_path_fails(rig, forge, tamper, reason):
    agent, challenge = rig
    decided = answer(agent, challenge, tamper, forge)
    assert decided.status == Challenge.Status.FAILED
    assert decided.reason == reason


def test_a_random_root_fails_with_a_bad_path(rig):
    agent, challenge = rig
    solution = honest(challenge)
    committed = commit(agent, challenge, uuid.uuid4().hex * 2)
    assert committed.status_code == 200
    rows = reveal_rows(solution, committed.json()["reveal"])
    assert reveal(agent, challenge, rows).status_code == 202
    pk = Challenge.objects.get(public_id=challenge["challenge_id"]).pk
    check_challenge(pk)
    decided = Challenge.objects.get(pk=pk)
    assert (decided.status, decided.reason) == ("failed", Challenge.Reason.BAD_PATH)


def test_a_late_commit_fails(settings, alice):
    settings.GPU_VERIFICATION_ALLOWANCE_S = 0
    settings.GPU_VERIFICATION_DEADLINE_FACTOR = 0
    agent = Agent(enroll(alice, [h100("late")]))
    challenges_ = delivered(agent)
    # Delivered with a deadline already behind it: the answer lists none to work on...
    assert challenges_ == []
    challenge = Challenge.objects.get(gpu__uuid=h100("late")["uuid"])
    refused = commit(agent, {"challenge_id": str(challenge.public_id)}, "ab" * 32)
    assert refused.status_code == 410
    assert refused.json()["error"] == "late_commit"
    challenge.refresh_from_db()
    assert (challenge.status, challenge.reason) == ("failed", Challenge.Reason.LATE_COMMIT)


def test_a_late_reveal_fails(settings, rig):
    settings.GPU_VERIFICATION_REVEAL_S = 0
    agent, challenge = rig
    solution = honest(challenge)
    committed = commit(agent, challenge, solution.root.hex())
    refused = reveal(agent, challenge, reveal_rows(solution, committed.json()["reveal"]))
    assert refused.status_code == 410
    assert refused.json()["error"] == "late_reveal"
    decided = Challenge.objects.get(public_id=challenge["challenge_id"])
    assert (decided.status, decided.reason) == ("failed", Challenge.Reason.LATE_REVEAL)


def test_no_answer_fails_when_the_sweep_finds_the_deadline_passed(rig):
    agent, challenge = rig
    row = Challenge.objects.get(public_id=challenge["challenge_id"])
    assert challenges.sweep(row.commit_deadline - timedelta(seconds=1))["failed"] == 0
    assert challenges.sweep(row.commit_deadline + timedelta(seconds=1))["failed"] == 1
    row.refresh_from_db()
    assert (row.status, row.reason) == ("failed", Challenge.Reason.NO_ANSWER)
    # A commit now is refused: the challenge is decided.
    refused = commit(agent, challenge, "ab" * 32)
    assert (refused.status_code, refused.json()["error"]) == (409, "challenge_closed")


def test_a_committed_challenge_never_revealed_fails_as_late_reveal(rig):
    agent, challenge = rig
    assert commit(agent, challenge, honest(challenge).root.hex()).status_code == 200
    row = Challenge.objects.get(public_id=challenge["challenge_id"])
    challenges.sweep(row.reveal_deadline + timedelta(seconds=1))
    row.refresh_from_db()
    assert (row.status, row.reason) == ("failed", Challenge.Reason.LATE_REVEAL)


def test_replays_other_nodes_and_wrong_order_get_a_4xx_with_a_code(alice, bob, rig):
    agent, challenge = rig
    solution = honest(challenge)

    early = reveal(agent, challenge, [])
    assert (early.status_code, early.json()["error"]) == (409, "not_committed")

    other = Agent(enroll(bob, [h100("bobs")]))
    stolen = commit(other, challenge, solution.root.hex())
    assert (stolen.status_code, stolen.json()["error"]) == (404, "unknown_challenge")
    missing = commit(agent, {"challenge_id": str(uuid.uuid4())}, solution.root.hex())
    assert (missing.status_code, missing.json()["error"]) == (404, "unknown_challenge")

    committed = commit(agent, challenge, solution.root.hex())
    assert committed.status_code == 200
    again = commit(agent, challenge, solution.root.hex())
    assert (again.status_code, again.json()["error"]) == (409, "already_committed")
    # The same root again (a retry whose first answer was lost) hears the same rows; another
    # root hears none: rows are never drawn again.
    assert again.json()["reveal"] == committed.json()["reveal"]
    other_root = commit(agent, challenge, "ab" * 32)
    assert (other_root.status_code, other_root.json()["error"]) == (409, "already_committed")
    assert "reveal" not in other_root.json()

    wanted = committed.json()["reveal"]
    rows = reveal_rows(solution, wanted)
    assert reveal(other, challenge, rows).status_code == 404
    assert reveal(agent, challenge, rows[:-1]).json()["error"] == "validation_failed"
    assert reveal(agent, challenge, rows).status_code == 202
    replayed = reveal(agent, challenge, rows)
    assert (replayed.status_code, replayed.json()["error"]) == (409, "already_revealed")


@pytest.mark.parametrize(
    "body",
    [
        {"root": "AB" * 32, "elapsed_s": 1},
        {"root": "ab" * 31, "elapsed_s": 1},
        {"root": "ab" * 32, "elapsed_s": -1},
        {"root": "ab" * 32, "elapsed_s": True},
        {"root": "ab" * 32},
        {"root": ["ab"], "elapsed_s": 1},
    ],
)
def test_a_malformed_commit_is_a_400_and_leaves_the_challenge_open(rig, body):
    agent, challenge = rig
    url = COMMIT.format(id=challenge["challenge_id"])
    response = agent.client.post(url, body, content_type="application/json", headers=agent.auth())
    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"
    assert Challenge.objects.get(public_id=challenge["challenge_id"]).status == "delivered"


@pytest.mark.parametrize(
    "row",
    [
        {"round": 99, "row": 0, "leaf": "00" * 512, "path": []},
        {"round": 0, "row": 64, "leaf": "00" * 512, "path": []},
        {"round": 0, "row": 0, "leaf": "00" * 511, "path": []},
        {"round": 0, "row": 0, "leaf": "00" * 512, "path": ["00" * 32] * 65},
        {"round": 0, "row": 0, "leaf": "00" * 512, "path": [7]},
        "row",
    ],
)
def test_a_malformed_reveal_is_a_400(rig, row):
    agent, challenge = rig
    assert commit(agent, challenge, "ab" * 32).status_code == 200
    response = reveal(agent, challenge, [row])
    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"


def test_unauthenticated_commits_are_refused(rig):
    agent, challenge = rig
    url = COMMIT.format(id=challenge["challenge_id"])
    body = {"root": "ab" * 32, "elapsed_s": 1}
    assert agent.client.post(url, body, content_type="application/json").status_code == 401
    bad = {"Authorization": "Bearer otn_nope"}
    response = agent.client.post(url, body, content_type="application/json", headers=bad)
    assert response.status_code == 401


def test_the_answer_repeats_a_challenge_until_it_is_committed(rig):
    agent, challenge = rig
    # Reports of a remembered agent take the fast path, except while a challenge waits.
    for _ in range(3):
        assert [c["challenge_id"] for c in delivered(agent)] == [challenge["challenge_id"]]
    config = agent.config().json()
    assert [c["challenge_id"] for c in config["challenges"]] == [challenge["challenge_id"]]
    assert commit(agent, challenge, honest(challenge).root.hex()).status_code == 200
    assert delivered(agent) == []


def test_a_slow_gpu_fails_as_slow_for_model(settings, alice):
    """A GPU that claims an H100 but works at a fraction of its speed: the checks pass, the
    measured throughput (work / (commit - delivery)) does not."""
    settings.GPU_VERIFICATION_MIN_TIMED_S = 0
    agent = Agent(enroll(alice, [h100("slow")]))
    (challenge,) = delivered(agent)
    row = Challenge.objects.get(public_id=challenge["challenge_id"])
    # It took 10 s for what an H100 does in a fraction of a millisecond.
    Challenge.objects.filter(pk=row.pk).update(
        delivered_at=row.delivered_at - timedelta(seconds=10)
    )
    decided = answer(agent, challenge)
    assert (decided.status, decided.reason) == ("failed", Challenge.Reason.SLOW_FOR_MODEL)
    assert "TOPS measured" in decided.detail


def test_a_failed_gpu_is_held_out_until_it_passes_again(alice, rig):
    agent, challenge = rig
    failed = answer(agent, challenge, forge=_made_up_rows)
    start = support.epoch_start(hours_ago=5)
    Challenge.objects.filter(pk=failed.pk).update(decided_at=start)
    gpu_uuid = challenge["gpu_uuid"]
    report(agent, gpu_uuid, start)
    support.ingest_all()
    held = HeldOut.objects.get(epoch=support.settle(start))
    assert held.reason == HeldOut.Reason.VERIFICATION_FAILED
    assert "a revealed row is not the product" in held.detail

    # The retry comes after GPU_VERIFICATION_RETRY_S; an admin may issue one at once.
    gpu = GPU.objects.get(uuid=gpu_uuid)
    assert gpu.next_challenge_at > timezone.now()
    retry = challenges.issue(gpu, Challenge.Trigger.ADMIN)
    (again,) = delivered(agent)
    assert again["challenge_id"] == str(retry.public_id)
    passed = answer(agent, again)
    assert passed.status == "passed"
    next_epoch = start + timedelta(hours=1)
    Challenge.objects.filter(pk=passed.pk).update(decided_at=next_epoch)
    report(agent, gpu_uuid, next_epoch)
    support.ingest_all()
    assert not HeldOut.objects.filter(epoch=support.settle(next_epoch)).exists()


def test_an_admin_exempts_a_gpu_with_a_reason_and_it_earns_unverified(alice, staff):
    agent = Agent(enroll(alice, [h100("exempt")]))
    gpu = GPU.objects.get(uuid=h100("exempt")["uuid"])
    added = staff.post(
        "/admin/contributors/exemption/add/", {"gpu": gpu.pk, "reason": "Verified on site"}
    )
    assert added.status_code == 302, added.content
    exemption = Exemption.objects.get(gpu=gpu)
    assert exemption.granted_by.username == "network-admin"
    assert exemption.reason == "Verified on site"
    # A second open exemption of the same GPU is a form error, not a 500.
    twice = staff.post("/admin/contributors/exemption/add/", {"gpu": gpu.pk, "reason": "again"})
    assert twice.status_code == 200
    assert Exemption.objects.filter(gpu=gpu).count() == 1

    start = support.epoch_start()
    report(agent, gpu.uuid, start)
    support.ingest_all()
    epoch = support.settle(start)
    assert not HeldOut.objects.filter(epoch=epoch).exists()
    assert RewardEntry.objects.filter(epoch=epoch, gpu=gpu).exists()


def test_an_admin_issues_a_challenge_now_and_sees_its_result(alice, staff, rig):
    agent, first = rig
    gpu = GPU.objects.get(uuid=first["gpu_uuid"])
    response = staff.post(
        "/admin/contributors/gpu/",
        {"action": "challenge_now", "_selected_action": [gpu.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Issued 1 challenge" in response.content.decode()
    (fresh,) = delivered(agent)
    assert fresh["challenge_id"] != first["challenge_id"]
    assert Challenge.objects.get(public_id=first["challenge_id"]).status == "cancelled"
    assert answer(agent, fresh).status == "passed"
    listing = staff.get("/admin/contributors/challenge/", {"status": "passed"})
    assert fresh["challenge_id"] in listing.content.decode()
    detail = staff.get(
        f"/admin/contributors/challenge/{Challenge.objects.get(public_id=fresh['challenge_id']).pk}/change/"
    )
    assert detail.status_code == 200
    assert first["seed"] not in detail.content.decode()


def test_periodic_challenges_come_for_every_gpu_of_a_node_at_once(alice):
    gpus = [h100("p1"), h100("p2")]
    agent = Agent(enroll(alice, gpus))
    for challenge in delivered(agent):
        assert answer(agent, challenge).status == "passed"
    agent.send(batch([sample(g["uuid"]) for g in gpus]))
    support.ingest_all()
    first = GPU.objects.get(uuid=gpus[0]["uuid"])
    assert first.next_challenge_at is not None
    # Only the first GPU's time came; both are challenged.
    GPU.objects.filter(pk=first.pk).update(next_challenge_at=timezone.now() - timedelta(seconds=1))
    assert challenges.issue_due() == 2
    assert {c["gpu_uuid"] for c in delivered(agent)} == {g["uuid"] for g in gpus}
    assert set(Challenge.objects.filter(status="delivered").values_list("trigger", flat=True)) == {
        "periodic"
    }


def test_an_inventory_change_sets_a_new_challenge(alice, rig):
    agent, challenge = rig
    assert answer(agent, challenge).status == "passed"
    changed = h100("rig", name="NVIDIA H200", memory_total_mib=143771)
    response = agent.client.post(
        TELEMETRY,
        batch([], gpus=[changed]),
        content_type="application/json",
        headers=agent.auth(),
    )
    assert response.status_code == 202
    (fresh,) = response.json()["challenges"]
    assert Challenge.objects.get(public_id=fresh["challenge_id"]).trigger == "inventory"


def test_verification_off_pays_as_before(settings, alice):
    settings.GPU_VERIFICATION = False
    agent = Agent(enroll(alice, [h100("off")]))
    assert delivered(agent) == []
    assert not Challenge.objects.exists()
    start = support.epoch_start()
    report(agent, h100("off")["uuid"], start)
    support.ingest_all()
    epoch = support.settle(start)
    assert not HeldOut.objects.filter(epoch=epoch).exists()
    assert RewardEntry.objects.filter(epoch=epoch).exists()


def test_the_pages_say_which_gpus_are_unverified_and_why(alice, rig):
    """The dashboard lists the unverified GPU; its page shows the failure, then the pass with
    its throughput against the model's."""
    agent, challenge = rig
    page = signed_in(alice)
    dashboard = page.get("/dashboard/").content.decode()
    assert "1 GPU not verified" in dashboard
    assert "unverified" in dashboard

    answer(agent, challenge, forge=_made_up_rows)
    gpu_page = page.get(f"/gpus/{challenge['gpu_uuid']}/").content.decode()
    assert 'data-verification="verification_failed"' in gpu_page
    assert "a revealed row is not the product" in gpu_page
    assert "omnitensor-agent verify" in gpu_page

    retry = challenges.issue(GPU.objects.get(uuid=challenge["gpu_uuid"]), "admin")
    (again,) = delivered(agent)
    assert again["challenge_id"] == str(retry.public_id)
    passed = answer(agent, again)
    gpu_page = page.get(f"/gpus/{challenge['gpu_uuid']}/").content.decode()
    assert "verified</span>" in gpu_page
    assert f"{passed.expected_tops:.0f} TOPS expected" in gpu_page
    assert "not verified" not in page.get("/dashboard/").content.decode()


def test_the_protocol_and_its_vectors_are_served_for_third_party_agents(client):
    text = client.get("/api/v1/agent/proof/text")
    assert text.status_code == 200
    assert text["Content-Type"].startswith("text/markdown")
    assert "# Proof of GPU" in text.content.decode()
    vectors = client.get("/api/v1/agent/proof/vectors")
    assert vectors.status_code == 200
    assert {c["n"] for c in vectors.json()["cases"]} == {64, 128, 192}
    assert client.get("/api/v1/agent/proof/..%2Fmanage.py").status_code == 404
    assert client.get("/api/v1/agent/proof/settings").status_code == 404
    # The API docs point to them.
    schema = client.get("/api/schema/").content.decode()
    assert "/api/v1/agent/proof/vectors" in schema


def test_a_pass_counts_only_for_the_hardware_it_was_set_for(alice, rig):
    """A real 4090 passes a challenge sized for what it claimed, then renames itself an H100:
    the open challenge is replaced, and the old pass no longer verifies it."""
    agent, challenge = rig
    assert answer(agent, challenge).status == "passed"
    gpu = GPU.objects.get(uuid=challenge["gpu_uuid"])
    assert challenges.standing([gpu.pk], timezone.now())[gpu.pk].verified

    renamed = h100("rig", name="NVIDIA H200", memory_total_mib=143771)
    response = agent.send(batch([], gpus=[renamed]))
    (fresh,) = response.json()["challenges"]
    standing = challenges.standing([gpu.pk], timezone.now())[gpu.pk]
    assert (standing.verified, standing.reason) == (False, "unverified")
    assert "changed since its last pass" in standing.detail

    # Renamed again while that challenge is open (delivered): replaced again, never kept.
    back = agent.send(batch([], gpus=[h100("rig")])).json()["challenges"]
    assert [c["challenge_id"] for c in back] != [fresh["challenge_id"]]
    assert Challenge.objects.get(public_id=fresh["challenge_id"]).status == "cancelled"
    assert answer(agent, back[0]).status == "passed"
    assert challenges.standing([gpu.pk], timezone.now())[gpu.pk].verified


def test_adding_a_gpu_challenges_every_gpu_of_the_node_at_once(alice, rig):
    """One real GPU must not answer, in turn, for GPUs added one by one."""
    agent, challenge = rig
    assert answer(agent, challenge).status == "passed"
    added = agent.send(batch([], gpus=[h100("rig"), h100("second")])).json()["challenges"]
    assert {c["gpu_uuid"] for c in added} == {h100("rig")["uuid"], h100("second")["uuid"]}
    triggers = dict(
        Challenge.objects.filter(status="delivered").values_list("gpu__uuid", "trigger")
    )
    assert triggers == {h100("rig")["uuid"]: "node", h100("second")["uuid"]: "registered"}


@pytest.mark.parametrize("step", ["commit", "reveal"])
@pytest.mark.parametrize("shape", ["open arrays", "closed arrays", "open objects"])
def test_deep_commit_and_reveal_bodies_are_invalid_json(rig, step, shape):
    agent, challenge = rig
    if step == "reveal":
        assert commit(agent, challenge, honest(challenge).root.hex()).status_code == 200
    url = (COMMIT if step == "commit" else REVEAL).format(id=challenge["challenge_id"])
    body = deep_bodies(4000 if step == "commit" else 500 * 1024)[shape]
    response = agent.client.post(url, body, content_type="application/json", headers=agent.auth())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"


@pytest.mark.parametrize(("step", "size"), [("commit", 5000), ("reveal", 600 * 1024)])
def test_oversized_commit_and_reveal_bodies_are_refused_unread(rig, step, size):
    agent, challenge = rig
    url = (COMMIT if step == "commit" else REVEAL).format(id=challenge["challenge_id"])
    body = json.dumps({"root": "a" * size})
    response = agent.client.post(url, body, content_type="application/json", headers=agent.auth())
    assert response.status_code == 413
    assert Challenge.objects.get(public_id=challenge["challenge_id"]).status == "delivered"
