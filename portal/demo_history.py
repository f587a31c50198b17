"""A week of history for the demo fleet, so that a newcomer's first look has something to show.

At demo start (after the fleet's machines enrolled, before their agents start) alice, bob and
carol get HISTORY_DAYS of past work on the same simulated GPUs their agents report (uuids and
models from the machines' seeds), made through the paths the live portal uses:

- proof of GPU: a challenge a day per honest GPU, issued, delivered, committed, revealed and
  checked with `contributors.verification.challenges`, solved with the agent's NumPy solver
  (the demo's challenges take milliseconds), back-dated through their `now` parameters;
  `bob-forged` never answers, so it stays held out as unverified;
- jobs: attested with `rewards.jobs.attest` (the scheduler API's function), except on
  `carol-own-jobs`, whose self-reported jobs earn no compute reward;
- telemetry: agent batches (each sample built by the agent's own `GpuReading.to_sample`)
  accepted with `intake.accept` as at the time they were sent, stored by `store.drain` (live
  state and minute and hour rollups), with `rollups.run` for anything noted as due;
- rewards: `settlement.settle_due`, under a stored policy of 1-hour epochs for the week (a week
  of the demo's 5-minute epochs would take 2016 settlements) and a stored policy with the
  demo's own settings (REWARD_EPOCH_S, ...) from the hour the history ends, which pages show
  as the policy in force.

Samples come every 30 s (the coverage gap, so coverage stays whole) and every
AGENT_SAMPLE_INTERVAL_S for the last FINE_HOURS, as the live agents send them. Raw samples
older than a day before the history's end are then deleted (pruned, as retention does later
for live data): charts beyond the last hour read minute and hour rollups, and every epoch they
belonged to is settled by then.

Idempotent: the history is made only for a demo database without telemetry, epochs or
policies yet. The policies, challenges, jobs and every batch are written in one transaction,
and the history policy's row says it was made; so a Celery worker and beat running meanwhile
see all of it or nothing (settlement waits for pending batches, never settles an hour before
its samples), and a run that was interrupted after that transaction only finishes what
workers would do anyway: store, roll up, settle, prune.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

log = logging.getLogger("portal.demo")

HISTORY_DAYS = 7
HISTORY_EPOCH_S = 3600
FINE_HOURS = 3
RAW_KEPT = timedelta(days=1)
HISTORY_NOTE = "demo history: 1-hour epochs for the week before the demo started"
LIVE_NOTE = "demo: the demo's epochs (REWARD_EPOCH_S) from the hour its history ends"
NAMESPACE = uuid.UUID("6f6d6e69-7465-6e73-6f72-2d64656d6f21")
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)

# How busy each machine's GPUs are (1: as busy as the network's daytime demand makes them).
DEMAND = {
    "alice-rig-1": 0.8,
    "alice-rig-2": 0.6,
    "bob-workstation": 0.35,
    "carol-lab": 0.55,
    "carol-own-jobs": 0.5,
    "bob-forged": 0.6,
}


@dataclass
class History:
    """What `ensure` did; `made` is False when the database had its history (or data) already."""

    made: bool
    skipped: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time: what a busy machine's timing hides
    samples: int = 0
    batches: int = 0
    jobs: int = 0
    challenges: int = 0
    epochs: int = 0
    pruned: int = 0
    steps: dict[str, float] = field(default_factory=dict)


# --- the plan: what each GPU did ----------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    job_id: str
    kind: str  # training or inference
    start: datetime
    end: datetime
    util: float  # training: steady level; inference: mean of a slow swing
    memory_frac: float


@dataclass
class GpuPlan:
    uuid: str
    name: str
    memory_total_mib: int
    idle_w: float
    max_w: float
    jobs: list[Job]
    seed: int


@dataclass
class MachinePlan:
    machine: object  # portal.demo.DemoMachine
    gpus: list[GpuPlan]
    outages: list[tuple[datetime, datetime]]
    phase: timedelta  # when in the sampling interval this machine's agent reads its GPUs

    def online(self, moment: datetime) -> bool:
        return not any(a <= moment < b for a, b in self.outages)


def _day_factor(moment: datetime) -> float:
    """Demand over the day (UTC): highest in the afternoon, a third of it before dawn."""
    hours = moment.hour + moment.minute / 60
    return 0.65 + 0.35 * math.cos(2 * math.pi * (hours - 15) / 24)


def _outages(rng: random.Random, start: datetime, end: datetime) -> list[tuple]:
    """A machine's offline spans: none to two in a week, 20 minutes to 6 hours each, never in
    the first or the last 6 hours (so charts start full and the live fleet continues)."""
    spans = []
    for _ in range(rng.choice((0, 1, 1, 2))):
        length = timedelta(minutes=math.exp(rng.uniform(math.log(20), math.log(360))))
        room = (end - start - timedelta(hours=12) - length).total_seconds()
        at = start + timedelta(hours=6, seconds=rng.uniform(0, max(room, 0)))
        spans.append((at.replace(microsecond=0), (at + length).replace(microsecond=0)))
    spans.sort()
    merged = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _jobs(rng: random.Random, demand: float, start: datetime, end: datetime, outages) -> list[Job]:
    """Alternating idle and busy periods: idle gaps shorter by day than by night, jobs of 20
    minutes to 4 hours (inference shorter), cut short when the machine goes offline."""
    jobs = []
    t = start + timedelta(minutes=rng.uniform(0, 90))
    while t < end:
        down = next(((a, b) for a, b in outages if a <= t < b), None)
        if down:
            t = down[1] + timedelta(minutes=rng.uniform(1, 15))
            continue
        training = rng.random() < 0.6
        longest = 240 if training else 120
        length = timedelta(minutes=math.exp(rng.uniform(math.log(20), math.log(longest))))
        stop = min([t + length, end] + [a for a, _ in outages if t < a])
        jobs.append(
            Job(
                job_id=f"hist-job-{rng.getrandbits(48):012x}",
                kind="training" if training else "inference",
                start=t,
                end=stop,
                util=rng.uniform(80, 97) if training else rng.uniform(35, 65),
                memory_frac=rng.uniform(0.45, 0.92) if training else rng.uniform(0.2, 0.5),
            )
        )
        mean_idle = 50 / (demand * _day_factor(stop))
        t = stop + timedelta(minutes=max(2.0, rng.expovariate(1 / mean_idle)))
    return jobs


def plan(machines, start: datetime, end: datetime) -> list[MachinePlan]:
    """What each demo machine's GPUs did from `start` to `end`: the same every time for the
    same span (seeded by the machines' seeds)."""
    from omnitensor_agent.collectors.simulate import MODELS, SimulatedCollector

    power = {name: (idle_w, max_w) for name, _, idle_w, max_w in MODELS}
    plans = []
    for machine in machines:
        rng = random.Random(f"demo-history-{machine.seed}-{start.isoformat()}")
        outages = _outages(rng, start, end)
        gpus = []
        readings = SimulatedCollector(machine.gpus, seed=machine.seed).collect()
        for index, reading in enumerate(readings):
            gpu_rng = random.Random(f"{machine.seed}-{index}-{start.isoformat()}")
            demand = DEMAND.get(machine.name, 0.5) * gpu_rng.uniform(0.8, 1.2)
            idle_w, max_w = power[reading.name]
            gpus.append(
                GpuPlan(
                    uuid=reading.uuid,
                    name=reading.name,
                    memory_total_mib=reading.memory_total_mib,
                    idle_w=idle_w,
                    max_w=max_w,
                    jobs=_jobs(gpu_rng, demand, start, end, outages),
                    seed=gpu_rng.getrandbits(64),
                )
            )
        phase = timedelta(milliseconds=rng.randrange(0, 10_000))
        plans.append(MachinePlan(machine, gpus, outages, phase))
    return plans


# --- telemetry from the plan --------------------------------------------------------------------


def sample_times(machine: MachinePlan, start: datetime, end: datetime) -> list[datetime]:
    """When the machine's agent read its GPUs: every coverage gap, then every sample interval
    for the last FINE_HOURS; none while it was offline."""
    coarse = timedelta(seconds=min(settings.COVERAGE_MAX_GAP_S, settings.REWARD_MAX_GAP_S))
    fine = min(coarse, timedelta(seconds=settings.AGENT_SAMPLE_INTERVAL_S))
    fine_from = end - timedelta(hours=FINE_HOURS)
    times, t = [], start + machine.phase
    while t < end:
        if machine.online(t):
            times.append(t)
        t += fine if t >= fine_from else coarse
    return times


def readings(gpu: GpuPlan, times: list[datetime]):
    """The GPU's readings at `times`, as its agent would have taken them: utilization and
    memory from its job (or idle), power following utilization, temperature lagging power."""
    from omnitensor_agent.collectors.simulate import AMBIENT_C, DRIVER_VERSION
    from omnitensor_agent.readings import GpuReading

    rng = random.Random(gpu.seed)
    temperature = AMBIENT_C + 5
    jobs, j = gpu.jobs, 0
    previous = None
    for ts in times:
        while j < len(jobs) and jobs[j].end <= ts:
            j += 1
        job = jobs[j] if j < len(jobs) and jobs[j].start <= ts else None
        if job is None:
            util = max(0.0, rng.gauss(0.5, 1.0))
            used = int(gpu.memory_total_mib * 0.01) + rng.randint(0, 64)
        elif job.kind == "training":
            util = min(100.0, max(0.0, rng.gauss(job.util, 3)))
            used = int(gpu.memory_total_mib * job.memory_frac) + rng.randint(-256, 256)
        else:  # inference follows its traffic: a slow swing with the day, and noise
            swing = 25 * (_day_factor(ts) - 0.65)
            util = min(100.0, max(0.0, rng.gauss(job.util + swing, 8)))
            used = int(gpu.memory_total_mib * job.memory_frac) + rng.randint(-512, 512)
        used = min(gpu.memory_total_mib, max(0, used))
        watts = gpu.idle_w + (gpu.max_w - gpu.idle_w) * util / 100 * rng.uniform(0.9, 1.0)
        target = AMBIENT_C + 55.0 * watts / gpu.max_w
        step = 10.0 if previous is None else (ts - previous).total_seconds()
        # The live simulator closes a fifth of the gap every 10 s; the same rate per second.
        temperature += (target - temperature) * (1 - 0.8 ** min(step / 10, 60))
        previous = ts
        yield GpuReading(
            uuid=gpu.uuid,
            name=gpu.name,
            memory_total_mib=gpu.memory_total_mib,
            memory_used_mib=used,
            utilization_gpu_pct=round(util),
            temperature_c=round(temperature),
            power_w=round(watts, 2),
            driver_version=DRIVER_VERSION,
            ts=ts,
            job_id=job.job_id if job else None,
        )


def batches(machine: MachinePlan, start: datetime, end: datetime, anchor: str) -> list[dict]:
    """The machine's telemetry reports: an hour of samples each (split to stay within
    TELEMETRY_MAX_SAMPLES), with batch ids that are the same for the same history."""
    from omnitensor_agent.readings import rfc3339

    times = sample_times(machine, start, end)
    per_gpu = [list(readings(gpu, times)) for gpu in machine.gpus]
    by_hour: dict[datetime, list] = {}
    for at, row in enumerate(zip(*per_gpu, strict=True)):
        hour = times[at].replace(minute=0, second=0, microsecond=0)
        by_hour.setdefault(hour, []).extend(row)
    out = []
    limit = settings.TELEMETRY_MAX_SAMPLES
    for hour, items in sorted(by_hour.items()):
        for part, first in enumerate(range(0, len(items), limit)):
            chunk = items[first : first + limit]
            sent = min(chunk[-1].ts + timedelta(seconds=1), end)
            name = f"demo-history/{machine.machine.name}/{anchor}/{hour.isoformat()}/{part}"
            out.append(
                {
                    "batch_id": str(uuid.uuid5(NAMESPACE, name)),
                    "sent_at": rfc3339(sent),
                    "samples": [reading.to_sample() for reading in chunk],
                    "_received": sent + timedelta(milliseconds=150),
                }
            )
    return out


# --- proof of GPU -------------------------------------------------------------------------------


def proof_times(machine: MachinePlan, start: datetime, end: datetime) -> list[datetime]:
    """When the machine's GPUs passed a challenge: just before the history starts, then every
    14 to 22 hours while online (a pass counts GPU_VERIFICATION_VALID_S, a day), the last one
    recent enough to carry the live fleet until its own next challenge."""
    valid = timedelta(seconds=settings.GPU_VERIFICATION_VALID_S)
    rng = random.Random(f"demo-proofs-{machine.machine.seed}")
    times = [start - timedelta(minutes=rng.uniform(5, 20))]
    while times[-1] < end - valid / 2:
        t = times[-1] + valid * rng.uniform(0.58, 0.9)
        down = next(((a, b) for a, b in machine.outages if a <= t < b), None)
        if down:  # a challenge is delivered once the machine is back
            t = min(down[1] + timedelta(seconds=20), times[-1] + valid - MINUTE)
        times.append(min(t, end - MINUTE))
    return times


def prove(node, at: datetime, backend) -> int:
    """Every physical GPU of `node` passes a challenge issued at `at`: issue (the whole node at
    once, as `issue_due` does), deliver, solve with the agent's solver, commit and reveal as
    an honest agent on time, check. Returns the challenges passed."""
    from omnitensor_agent.proof import solve

    from contributors.models import GPU, Challenge
    from contributors.verification import challenges

    gpus = GPU.objects.filter(node=node, mig_parent__isnull=True, enabled=True).order_by("pk")
    for gpu in gpus:
        challenges.issue(gpu, Challenge.Trigger.PERIODIC, now=at)
    passed = 0
    for delivered in challenges.waiting_for(node, now=at):
        challenge = Challenge.objects.get(public_id=delivered["challenge_id"])
        solution = solve(backend, bytes.fromhex(delivered["seed"]), delivered["n"],
                         delivered["rounds"])  # fmt: skip
        # It took as long as its model should (the portal times challenges of a second or more).
        elapsed = min(challenge.expected_s, challenge.commit_within_s / 2)
        committed = at + timedelta(seconds=elapsed)
        answer = challenges.commit(challenge, solution.root.hex(), elapsed, now=committed)
        wanted = [(item["round"], item["row"]) for item in answer["reveal"]]
        rows = {}
        for r, i in wanted:
            item = solution.reveal(r, i)
            rows[(r, i)] = (item["leaf"], item["path"])
        challenges.reveal(challenge, rows, now=committed + timedelta(milliseconds=300))
        decided = challenges.check(challenge.pk, now=committed + timedelta(seconds=1))
        passed += decided is not None and decided.status == Challenge.Status.PASSED
    return passed


# --- the step -----------------------------------------------------------------------------------


def _has_data() -> str:
    """Why the database is not a fresh demo database ("" when it is)."""
    from contributors.models import Sample, TelemetryBatch
    from rewards.models import Epoch, RewardPolicy

    for model, what in (
        (TelemetryBatch, "telemetry"),
        (Sample, "telemetry"),
        (Epoch, "settled epochs"),
        (RewardPolicy, "reward policies"),
    ):
        if model.objects.exists():
            return f"the database has {what} already"
    return ""


# Loggers that say a line per epoch or challenge: a week of them would bury the demo's log.
QUIET = ("rewards.settlement", "contributors.verification.challenges")


@contextlib.contextmanager
def _quiet():
    loggers = [logging.getLogger(name) for name in QUIET]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def ensure(machines, configs: dict, now: datetime | None = None) -> History:
    """Give the demo database its week of history, once: `configs` are the machines' enrolled
    agent configs by machine name (`Fleet.enrolled_config`)."""
    with _quiet():
        return _ensure(machines, configs, now)


def _ensure(machines, configs: dict, now: datetime | None) -> History:
    from rewards.models import RewardPolicy

    started, cpu = time.perf_counter(), time.process_time()
    live_policy = RewardPolicy.objects.filter(notes=LIVE_NOTE).first()
    if RewardPolicy.objects.filter(notes=HISTORY_NOTE).exists() and live_policy is not None:
        history = History(made=False, skipped="the demo's history exists")
        end = live_policy.created_at  # when the history ends (see `_write`)
    else:
        why = _has_data()
        if why:
            return History(made=False, skipped=f"{why}: history is made only for a fresh one")
        history = History(made=True)
        end = _write(machines, configs, now or timezone.now(), history)
    _finish(end, history, live_epochs=history.made)
    history.seconds = time.perf_counter() - started
    history.cpu_seconds = time.process_time() - cpu
    return history


def _write(machines, configs: dict, now: datetime, history: History) -> datetime:
    """Plan the week and write what the portal's clients would have sent in it (one
    transaction: see the module's docstring). Returns the history's end."""
    from omnitensor_agent.proof import make_backend

    from contributors.models import Node
    from contributors.telemetry import intake
    from rewards import jobs
    from rewards.models import RewardPolicy

    clock = time.perf_counter()
    end = now.replace(microsecond=0)
    # The last history epoch must be due when the history ends, so it settles now.
    live_from = (end - timedelta(seconds=settings.REWARD_GRACE_S)).replace(
        minute=0, second=0, microsecond=0
    )
    start = live_from - timedelta(days=HISTORY_DAYS)
    anchor = end.isoformat()
    plans = plan(machines, start, end)
    reports = {p.machine.name: batches(p, start, end, anchor) for p in plans}
    history.steps["plan"] = time.perf_counter() - clock

    nodes = {m.name: Node.authenticate(configs[m.name].node_token) for m in machines}
    backend = make_backend("numpy")
    scale = HISTORY_EPOCH_S / settings.REWARD_EPOCH_S  # the same emission per hour
    clock = time.perf_counter()
    with transaction.atomic():
        history.steps["write lock"] = time.perf_counter() - clock
        clock = time.perf_counter()
        RewardPolicy.objects.create(
            effective_from=start,
            epoch_length_s=HISTORY_EPOCH_S,
            grace_s=settings.REWARD_GRACE_S,
            max_gap_s=settings.REWARD_MAX_GAP_S,
            compute_pool_wei=int(settings.REWARD_COMPUTE_POOL_WEI * scale),
            idle_pool_wei=int(settings.REWARD_IDLE_POOL_WEI * scale),
            created_at=end,
            notes=HISTORY_NOTE,
        )
        default = RewardPolicy.default()
        RewardPolicy.objects.create(
            effective_from=live_from,
            epoch_length_s=default.epoch_length_s,
            grace_s=default.grace_s,
            max_gap_s=default.max_gap_s,
            compute_pool_wei=default.compute_pool_wei,
            idle_pool_wei=default.idle_pool_wei,
            created_at=end,  # `ensure` reads the history's end from here
            notes=LIVE_NOTE,
        )
        for machine_plan in plans:
            machine = machine_plan.machine
            if not machine.forged:  # it never answers: held out as unverified
                for at in proof_times(machine_plan, start, end):
                    history.challenges += prove(nodes[machine.name], at, backend)
        history.steps["proofs"] = time.perf_counter() - clock
        clock = time.perf_counter()
        for machine_plan in plans:
            machine = machine_plan.machine
            if machine.attest_jobs:
                for gpu in machine_plan.gpus:
                    for job in gpu.jobs:
                        jobs.attest(
                            {
                                "job_id": job.job_id,
                                "gpu_uuid": gpu.uuid,
                                "kind": job.kind,
                                "started_at": job.start.isoformat(),
                                "ended_at": job.end.isoformat(),
                            }
                        )
                        history.jobs += 1
        history.steps["jobs"] = time.perf_counter() - clock
        clock = time.perf_counter()
        # In the order they were sent, so that workers store each GPU's samples in order.
        sent = sorted(
            ((body["_received"], name, body) for name, bodies in reports.items()
             for body in bodies),
            key=lambda item: (item[0], item[1]),
        )  # fmt: skip
        for received, name, body in sent:
            del body["_received"]
            outcome = intake.accept(nodes[name], body, now=received)
            history.batches += 1
            history.samples += outcome.body.get("accepted", 0)
            if outcome.body.get("rejected"):
                raise RuntimeError(f"demo history: {name}: samples refused: {outcome.body}")
    history.steps["accept"] = time.perf_counter() - clock
    return end


def _finish(end: datetime, history: History, live_epochs: bool) -> None:
    """What the portal's workers do with the history (safe to repeat): store the batches,
    redo rollups noted as due, settle the history's epochs (and, with `live_epochs`, every
    epoch due now, which beat settles otherwise), then delete raw samples older than a day
    before the history's end from settled epochs."""
    from contributors.models import Sample
    from contributors.telemetry import rollups, store
    from rewards import settlement
    from rewards.models import Epoch, RewardPolicy

    clock = time.perf_counter()
    while store.drain()[0]:
        pass
    rollups.run()
    history.steps["store"] = time.perf_counter() - clock
    clock = time.perf_counter()
    # Each hour of the week settled when it was due, as beat would have settled it then (its
    # ledger says so); then every epoch due now, the demo's own since the history's last hour.
    policy = RewardPolicy.objects.get(notes=HISTORY_NOTE)
    grace = timedelta(seconds=policy.grace_s)
    live_from = RewardPolicy.objects.get(notes=LIVE_NOTE).effective_from
    hour = policy.effective_from + HOUR
    while hour <= live_from:
        history.epochs += len(settlement.settle_due(now=hour + grace, until=hour))
        hour += HOUR
    if live_epochs:
        history.epochs += len(settlement.settle_due(limit=100_000))
    history.steps["settle"] = time.perf_counter() - clock
    clock = time.perf_counter()
    settled_to = Epoch.objects.order_by("-end").values_list("end", flat=True).first()
    if settled_to is not None:
        cutoff = min(end - RAW_KEPT, settled_to)
        history.pruned = Sample.objects.filter(ts__lt=cutoff).delete()[0]
    history.steps["prune"] = time.perf_counter() - clock
