"""The life of a proof-of-GPU challenge (agent/PROOF.md): issue, deliver, commit, reveal,
check, and the sweep that fails the ones whose deadlines passed.

Only `check` does arithmetic, in a worker; everything on the request path is a few indexed
reads and writes. The rows to reveal are drawn with `secrets` when the commit arrives, so an
agent that did the work for only a share f of the rows passes with probability f^checks.
"""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from contributors.models import GPU, Challenge, Node
from contributors.telemetry.inventory import catalog
from contributors.verification import proof
from portal import metrics
from portal.lib.errors import Refused

log = logging.getLogger(__name__)

_random = secrets.SystemRandom()
TERA = 10**12


def enabled() -> bool:
    return settings.GPU_VERIFICATION


# --- sizing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    n: int
    rounds: int
    expected_ops_per_s: float
    commit_within_s: float


def size_for(gpu: GPU) -> Size:
    """n from the settings; rounds that make GPU_VERIFICATION_WORK_S of work at the claimed
    model's expected throughput; the commit deadline a multiple of that plus an allowance."""
    tops = catalog().spec(gpu.name).int8_tops or settings.GPU_VERIFICATION_DEFAULT_TOPS
    expected = tops * TERA * settings.GPU_VERIFICATION_EFFICIENCY_PCT / 100
    n = min(proof.MAX_N, settings.GPU_VERIFICATION_N // proof.LEAF_ROWS * proof.LEAF_ROWS)
    per_round = 2 * n**3
    rounds = math.ceil(settings.GPU_VERIFICATION_WORK_S * expected / per_round)
    rounds = max(1, min(settings.GPU_VERIFICATION_MAX_ROUNDS, rounds))
    expected_s = per_round * rounds / expected
    within = expected_s * settings.GPU_VERIFICATION_DEADLINE_FACTOR
    return Size(n, rounds, expected, within + settings.GPU_VERIFICATION_ALLOWANCE_S)


def next_time(now: datetime) -> datetime:
    """A random time for the next challenge: exponential (memoryless: no moment is safer
    than another to swap hardware), capped at half the validity so an honest GPU's pass never
    lapses between two challenges."""
    mean = settings.GPU_VERIFICATION_INTERVAL_S
    gap = min(_random.expovariate(1 / mean), settings.GPU_VERIFICATION_VALID_S / 2)
    return now + timedelta(seconds=gap)


# --- issuing ---------------------------------------------------------------------------------


# Triggers that replace an open challenge whatever its state: what the GPU claims changed (a
# pass of the old claim must not certify the new one), or an admin asked.
REPLACING = {"inventory", "admin"}


def issue(gpu: GPU, trigger: str, now: datetime | None = None, by=None) -> Challenge | None:
    """A new challenge for a physical GPU. An open one is replaced when it was not delivered
    yet, or when the trigger is an inventory change or an admin (`REPLACING`); otherwise it
    stands and None is returned. None too when verification is off or the GPU is a MIG
    instance (verified through its parent)."""
    if not enabled() or gpu.mig_parent_id:
        return None
    now = now or timezone.now()
    try:
        with transaction.atomic():
            open_ = Challenge.objects.select_for_update().filter(gpu=gpu, status__in=Challenge.OPEN)
            for current in open_:
                if current.status != Challenge.Status.ISSUED and trigger not in REPLACING:
                    return None
                current.status = Challenge.Status.CANCELLED
                current.decided_at = now
                current.detail = f"Replaced by a new challenge ({trigger})."
                current.save(update_fields=["status", "decided_at", "detail"])
            size = size_for(gpu)
            challenge = Challenge.objects.create(
                gpu=gpu,
                node_id=gpu.node_id,
                trigger=trigger,
                claimed_name=gpu.name,
                claimed_memory_mib=gpu.memory_total_mib,
                n=size.n,
                rounds=size.rounds,
                checks=settings.GPU_VERIFICATION_CHECKS,
                expected_ops_per_s=size.expected_ops_per_s,
                commit_within_s=size.commit_within_s,
                issued_at=now,
                issued_by=by,
            )
            GPU.objects.filter(pk=gpu.pk).update(next_challenge_at=next_time(now))
    except IntegrityError:
        # Another request or the sweep issued one for this GPU at the same moment: it stands.
        return None
    log.info("challenge %s issued to %s (%s)", challenge.public_id, gpu.uuid, trigger)
    return challenge


def issue_for_inventory(new: list[GPU], changed: list[GPU], now: datetime) -> None:
    """GPUs a node registered for the first time or whose claims changed get a challenge, and
    so does every other physical GPU of the node at once: adding GPUs one by one must not let
    one real GPU answer for each in turn (`issue_due` says why)."""
    for gpu in new:
        issue(gpu, Challenge.Trigger.REGISTERED, now)
    for gpu in changed:
        issue(gpu, Challenge.Trigger.INVENTORY, now)
    touched = {g.pk for g in [*new, *changed]}
    for node_id in {g.node_id for g in [*new, *changed]}:
        others = GPU.objects.filter(node_id=node_id, mig_parent__isnull=True, enabled=True)
        for gpu in others.exclude(pk__in=touched):
            issue(gpu, Challenge.Trigger.NODE, now)


def issue_due(now: datetime | None = None, limit: int = 500) -> int:
    """Random re-verification: each online physical GPU whose time came gets a challenge, and
    so does every other physical GPU of its node at the same moment, so a node must have the
    throughput of all the GPUs it claims at once (one real GPU cannot answer for many, one
    after the other)."""
    if not enabled():
        return 0
    now = now or timezone.now()
    online = now - timedelta(seconds=3 * settings.AGENT_REPORT_INTERVAL_S)
    due_nodes = (
        GPU.objects.filter(
            mig_parent__isnull=True,
            enabled=True,
            last_seen_at__gte=online,
        )
        .filter(Q(next_challenge_at__isnull=True) | Q(next_challenge_at__lte=now))
        .values_list("node_id", flat=True)
        .distinct()[:limit]
    )
    issued = 0
    for node_id in list(due_nodes):
        gpus = GPU.objects.filter(
            node_id=node_id, mig_parent__isnull=True, enabled=True, last_seen_at__gte=online
        ).exclude(challenges__status__in=Challenge.OPEN)
        for gpu in gpus:
            trigger = Challenge.Trigger.RETRY if _last_failed(gpu) else Challenge.Trigger.PERIODIC
            issued += issue(gpu, trigger, now) is not None
    return issued


def _last_failed(gpu: GPU) -> bool:
    last = (
        Challenge.objects.filter(gpu=gpu, decided_at__isnull=False)
        .exclude(status=Challenge.Status.CANCELLED)
        .order_by("-decided_at")
        .values_list("status", flat=True)
        .first()
    )
    return last == Challenge.Status.FAILED


# --- delivery --------------------------------------------------------------------------------


def waiting_for(node: Node | int, now: datetime | None = None) -> list[dict]:
    """The challenges the node must answer, as the telemetry answer and the config carry
    them; the first delivery starts each one's commit clock."""
    if not enabled():
        return []
    now = now or timezone.now()
    node_id = getattr(node, "pk", node)
    waiting = list(
        Challenge.objects.filter(
            node_id=node_id, status__in=[Challenge.Status.ISSUED, Challenge.Status.DELIVERED]
        ).select_related("gpu")
    )
    for challenge in waiting:
        if challenge.status == Challenge.Status.ISSUED:
            challenge.delivered_at = now
            challenge.commit_deadline = now + timedelta(seconds=challenge.commit_within_s)
            challenge.status = Challenge.Status.DELIVERED
            Challenge.objects.filter(pk=challenge.pk, status=Challenge.Status.ISSUED).update(
                status=Challenge.Status.DELIVERED,
                delivered_at=challenge.delivered_at,
                commit_deadline=challenge.commit_deadline,
            )
    return [
        {
            "challenge_id": str(c.public_id),
            "gpu_uuid": c.gpu.uuid,
            "seed": c.seed,
            "n": c.n,
            "rounds": c.rounds,
            "commit_deadline": c.commit_deadline.isoformat(),
            "commit_within_s": round((c.commit_deadline - now).total_seconds(), 3),
        }
        for c in waiting
        if c.commit_deadline > now
    ]


# --- commit and reveal -----------------------------------------------------------------------


def of_node(node: Node, challenge_id: str) -> Challenge:
    """The node's challenge by its public id; 404 for any other (another node's included)."""
    challenge = Challenge.objects.filter(public_id=challenge_id, node=node).first()
    if challenge is None:
        raise Refused(404, "unknown_challenge", "This node has no challenge with that id.")
    return challenge


def commit(challenge: Challenge, root: str, elapsed_s: float, now: datetime | None = None):
    """Record the root and draw the rows to reveal; the answer the agent gets."""
    now = now or timezone.now()
    with transaction.atomic():
        challenge = Challenge.objects.select_for_update().get(pk=challenge.pk)
        status = challenge.status
        if status in (Challenge.Status.COMMITTED, Challenge.Status.REVEALED):
            raise _already_committed(challenge, root)
        if status == Challenge.Status.ISSUED:
            raise Refused(409, "not_delivered", "This challenge was not delivered yet.")
        if status != Challenge.Status.DELIVERED:
            raise Refused(409, "challenge_closed", f"This challenge is {status} already.")
        late = now > challenge.commit_deadline
        if late:
            _fail(
                challenge, Challenge.Reason.LATE_COMMIT, now, _late(now, challenge.commit_deadline)
            )
        else:
            total = challenge.rounds * challenge.n
            drawn = _random.sample(range(total), min(challenge.checks, total))
            challenge.reveal_rows = [[g // challenge.n, g % challenge.n] for g in sorted(drawn)]
            challenge.root = root
            challenge.reported_elapsed_s = elapsed_s
            challenge.committed_at = now
            challenge.reveal_deadline = now + timedelta(seconds=settings.GPU_VERIFICATION_REVEAL_S)
            challenge.status = Challenge.Status.COMMITTED
            # Conditional on the status it was read with: SQLite takes no row lock, and a
            # second commit racing this one must not draw other rows.
            won = Challenge.objects.filter(pk=challenge.pk, status=status).update(
                reveal_rows=challenge.reveal_rows,
                root=root,
                reported_elapsed_s=elapsed_s,
                committed_at=now,
                reveal_deadline=challenge.reveal_deadline,
                status=Challenge.Status.COMMITTED,
            )
            if not won:
                raise _already_committed(Challenge.objects.get(pk=challenge.pk), root)
    if late:  # refused once the failure is committed
        raise Refused(410, "late_commit", "The commit deadline has passed: failed.")
    return _commit_answer(challenge)


def _already_committed(challenge: Challenge, root: str) -> Refused:
    """A second commit is refused; when it repeats the first one's root (the agent retried a
    commit whose answer it lost), the refusal names the same rows, so the reveal can go on.
    Nothing is drawn again: a new root can never buy new rows."""
    refused = Refused(409, "already_committed", "This challenge was committed already.")
    if root == challenge.root and challenge.status == Challenge.Status.COMMITTED:
        refused.extra = _commit_answer(challenge)
    return refused


def _commit_answer(challenge: Challenge) -> dict:
    return {
        "reveal": [{"round": r, "row": i} for r, i in challenge.reveal_rows],
        "reveal_deadline": challenge.reveal_deadline.isoformat(),
    }


def reveal(challenge: Challenge, rows: dict, now: datetime | None = None) -> None:
    """Keep the revealed rows (validated: exactly the requested ones) and have a worker check
    them once this transaction commits."""
    from contributors.tasks import check_challenge

    now = now or timezone.now()
    with transaction.atomic():
        challenge = Challenge.objects.select_for_update().get(pk=challenge.pk)
        status = challenge.status
        if status == Challenge.Status.REVEALED:
            raise Refused(409, "already_revealed", "This challenge was revealed already.")
        if status in (Challenge.Status.ISSUED, Challenge.Status.DELIVERED):
            raise Refused(409, "not_committed", "Commit a root before revealing rows.")
        if status != Challenge.Status.COMMITTED:
            raise Refused(409, "challenge_closed", f"This challenge is {status} already.")
        late = now > challenge.reveal_deadline
        if late:
            _fail(
                challenge, Challenge.Reason.LATE_REVEAL, now, _late(now, challenge.reveal_deadline)
            )
        else:
            _check_rows(challenge, rows)
            challenge.revealed = [
                {"round": r, "row": i, "leaf": rows[(r, i)][0], "path": rows[(r, i)][1]}
                for r, i in sorted(rows)
            ]
            won = Challenge.objects.filter(pk=challenge.pk, status=status).update(
                revealed=challenge.revealed, revealed_at=now, status=Challenge.Status.REVEALED
            )
            if not won:
                raise Refused(409, "already_revealed", "This challenge was revealed already.")
            pk = challenge.pk
            transaction.on_commit(lambda: check_challenge.delay(pk))
    if late:  # refused once the failure is committed
        raise Refused(410, "late_reveal", "The reveal deadline has passed: failed.")


def _check_rows(challenge: Challenge, rows: dict) -> None:
    wanted = {tuple(pair) for pair in challenge.reveal_rows}
    if set(rows) != wanted:
        missing = sorted(wanted - set(rows))
        extra = sorted(set(rows) - wanted)
        raise Refused(
            400,
            "validation_failed",
            "Reveal exactly the rows the commit answer named.",
            [
                {
                    "field": "rows",
                    "error": f"missing (round, row): {missing or 'none'}; "
                    f"not requested: {extra or 'none'}",
                }
            ],
        )


def _late(now: datetime, deadline: datetime) -> str:
    return f"{(now - deadline).total_seconds():.1f} s after the deadline."


# --- the check -------------------------------------------------------------------------------


def check(pk: int, now: datetime | None = None) -> Challenge | None:
    """Decide a revealed challenge: follow each revealed leaf's path to the root (hashing
    only, so junk costs the worker nothing more), then recompute each requested row. The
    decision counts from the reveal, when the agent's proof was complete, not from whenever a
    worker got to it. Idempotent: a challenge decided already (a redelivered task) is left
    alone."""
    challenge = Challenge.objects.filter(pk=pk, status=Challenge.Status.REVEALED).first()
    if challenge is None:
        return None
    reason, detail = _paths_failure(challenge) or _rows_failure(challenge) or ("", "")
    elapsed = (challenge.committed_at - challenge.delivered_at).total_seconds()
    measured = challenge.work_ops / max(elapsed, 1e-3)
    if not reason and challenge.expected_s >= settings.GPU_VERIFICATION_MIN_TIMED_S:
        ratio = measured / challenge.expected_ops_per_s
        if ratio * 100 < settings.GPU_VERIFICATION_SLOW_PCT:
            reason = Challenge.Reason.SLOW_FOR_MODEL
            detail = (
                f"{measured / TERA:.1f} TOPS measured, {ratio:.0%} of the "
                f"{challenge.expected_ops_per_s / TERA:.0f} TOPS its model should reach."
            )
    updates = {"measured_ops_per_s": measured, "decided_at": challenge.revealed_at}
    updates["detail"] = detail
    if reason:
        updates |= {"status": Challenge.Status.FAILED, "reason": reason}
    else:
        updates["status"] = Challenge.Status.PASSED
    with transaction.atomic():
        won = Challenge.objects.filter(pk=pk, status=Challenge.Status.REVEALED).update(**updates)
        if won and reason:
            _retry_later(challenge.gpu_id, now or timezone.now())
    if won:
        metrics.challenge_decided(updates["status"], reason)
        log.info("challenge %s: %s %s", challenge.public_id, updates["status"], reason)
    return Challenge.objects.get(pk=pk)


def _paths_failure(challenge: Challenge) -> tuple[str, str] | None:
    leaves = challenge.n // proof.LEAF_ROWS
    count = challenge.rounds * leaves
    root = bytes.fromhex(challenge.root)
    for item in challenge.revealed:
        r, i = item["round"], item["row"]
        node = proof.leaf_hash(r, i // proof.LEAF_ROWS, bytes.fromhex(item["leaf"]))
        path = [bytes.fromhex(h) for h in item["path"]]
        if proof.root_from_path(node, r * leaves + i // proof.LEAF_ROWS, count, path) != root:
            detail = f"Round {r}, row {i}: its path does not lead to the committed root."
            return Challenge.Reason.BAD_PATH, detail
    return None


def _rows_failure(challenge: Challenge) -> tuple[str, str] | None:
    pairs = [(item["round"], item["row"]) for item in challenge.revealed]
    expected = proof.recompute(bytes.fromhex(challenge.seed), challenge.n, pairs)
    for item in challenge.revealed:
        r, i = item["round"], item["row"]
        at = (i % proof.LEAF_ROWS) * proof.DIGEST_BYTES
        if bytes.fromhex(item["leaf"])[at : at + proof.DIGEST_BYTES] != expected[(r, i)]:
            return Challenge.Reason.WRONG_ROW, f"Round {r}, row {i} is not A·B."
    return None


def _fail(challenge: Challenge, reason: str, now: datetime, detail: str = "") -> bool:
    """Fail the challenge unless something else decided it first; True when this did."""
    won = Challenge.objects.filter(pk=challenge.pk, status=challenge.status).update(
        status=Challenge.Status.FAILED, reason=reason, decided_at=now, detail=detail
    )
    if won:
        # Callers may hold a transaction (`commit`, `reveal`): counted once it commits.
        transaction.on_commit(lambda: metrics.challenge_decided(Challenge.Status.FAILED, reason))
        _retry_later(challenge.gpu_id, now)
    return bool(won)


def _retry_later(gpu_id: int, now: datetime) -> None:
    retry = now + timedelta(seconds=settings.GPU_VERIFICATION_RETRY_S)
    GPU.objects.filter(pk=gpu_id).update(next_challenge_at=retry)


# --- the sweep -------------------------------------------------------------------------------


def sweep(now: datetime | None = None) -> dict:
    """Fail what missed a deadline, check reveals whose task was lost, issue what is due."""
    now = now or timezone.now()
    failed = 0
    for challenge in Challenge.objects.filter(
        status=Challenge.Status.DELIVERED, commit_deadline__lt=now
    ):
        failed += _fail(
            challenge, Challenge.Reason.NO_ANSWER, now, "No commit before the deadline."
        )
    for challenge in Challenge.objects.filter(
        status=Challenge.Status.COMMITTED, reveal_deadline__lt=now
    ):
        failed += _fail(
            challenge, Challenge.Reason.LATE_REVEAL, now, "No reveal before the deadline."
        )
    # A reveal's check task lost with a broker or worker: checked here, never twice (`check`
    # decides only a challenge still `revealed`).
    stuck = Challenge.objects.filter(
        status=Challenge.Status.REVEALED, revealed_at__lt=now - timedelta(minutes=2)
    ).values_list("pk", flat=True)
    rechecked = sum(check(pk, now) is not None for pk in list(stuck)[:20])
    issued = issue_due(now)
    return {"failed": failed, "rechecked": rechecked, "issued": issued}


# --- standing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """Whether a GPU may earn at a moment, and why not."""

    verified: bool
    reason: str = ""  # "unverified" or "verification_failed"
    detail: str = ""
    exempt: bool = False
    last: Challenge | None = None


def standing(gpu_ids: list[int], at: datetime) -> dict[int, Standing]:
    """Each physical GPU's standing at `at`: verified while it holds a pass younger than
    GPU_VERIFICATION_VALID_S and no failure since, or an exemption in force."""
    from contributors.models import Exemption

    if not enabled():
        return {pk: Standing(True) for pk in gpu_ids}
    exempt = set(
        # An admin vouches for the hardware: every epoch not settled yet, until revoked.
        Exemption.objects.filter(gpu_id__any=gpu_ids)
        .filter(Q(revoked_at__isnull=True) | Q(revoked_at__gt=at))
        .values_list("gpu_id", flat=True)
    )
    valid = timedelta(seconds=settings.GPU_VERIFICATION_VALID_S)
    latest, claims = _latest_decided(gpu_ids, at)
    result = {}
    for pk in gpu_ids:
        last = latest.get(pk)
        if pk in exempt:
            result[pk] = Standing(True, exempt=True, last=last)
        elif last is None:
            result[pk] = Standing(
                False, "unverified", "No proof-of-GPU challenge passed yet.", last=last
            )
        elif last.status == Challenge.Status.FAILED:
            result[pk] = Standing(
                False,
                "verification_failed",
                f"Its last challenge failed: {last.get_reason_display()}.",
                last=last,
            )
        elif (last.claimed_name, last.claimed_memory_mib) != claims.get(pk):
            result[pk] = Standing(
                False,
                "unverified",
                "Its model or memory changed since its last pass: a pass counts only for the "
                "hardware it was set for.",
                last=last,
            )
        elif last.decided_at < at - valid:
            result[pk] = Standing(
                False, "unverified", "Its last passed challenge is too old.", last=last
            )
        else:
            result[pk] = Standing(True, last=last)
    return result


def _latest_decided(gpu_ids: list[int], at: datetime) -> tuple[dict, dict]:
    """The newest challenge each GPU had decided (passed or failed) by `at`, and what each GPU
    claims now (name, memory): one read of the GPUs with a correlated subquery on the
    (gpu, -decided_at) index, then one read of those challenges."""
    newest = (
        Challenge.objects.filter(
            gpu_id=OuterRef("pk"),
            decided_at__lte=at,
            status__in=[Challenge.Status.PASSED, Challenge.Status.FAILED],
        )
        .order_by("-decided_at", "-pk")
        .values("pk")[:1]
    )
    rows = GPU.objects.filter(pk__any=gpu_ids).annotate(last=Subquery(newest))
    claims, last_ids = {}, []
    for pk, name, memory, last in rows.values_list("pk", "name", "memory_total_mib", "last"):
        claims[pk] = (name, memory)
        if last is not None:
            last_ids.append(last)
    latest = {c.gpu_id: c for c in Challenge.objects.filter(pk__any=last_ids)}
    return latest, claims
