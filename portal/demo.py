"""The demo fleet: simulated contributors whose agents and scheduler use the real HTTP API.

`make run` starts it (unless DEMO_FLEET=false) so a newcomer sees live GPUs, jobs and, later,
rewards within minutes. Every agent here is the real `omnitensor_agent` Runner with the
simulated collector: it enrolls with a real enrollment code, spools to SQLite and posts batches
over HTTP, exactly as on a real machine. A simulated scheduler attests the jobs the simulated
GPUs run through POST /api/v1/scheduler/jobs, except on one GPU whose owner runs their own jobs
(self-reported work that earns no compute reward, as the rules say). The agents answer
proof-of-GPU challenges with the NumPy backend (the demo's challenges are small: settings),
except `bob-forged`, a forged agent that never does: its GPU is held out as unverified.
`alice-rig-2` is switched off on a schedule (its agent stops, as in a power cut), and alice has
an email alert channel with a 3-minute offline threshold, so her alert history at /alerts/
shows "offline" and "back online" within the first ten minutes; the emails land in the file
backend (var/mail) and the page shows what they said.

Before the agents start, a fresh demo database gets a week of history on the same machines
(`portal.demo_history`), so that dashboards, charts and rewards are full on first load.
"""

import functools
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from eth_account import Account
from eth_utils import keccak

from contributors.models import EnrollmentCode, ServiceToken
from portal.lib.times import rfc3339, rfc3339_or_none

log = logging.getLogger("portal.demo")


@dataclass(frozen=True)
class DemoMachine:
    owner: str  # key of DEMO_CONTRIBUTORS
    name: str
    gpus: int
    seed: int
    attest_jobs: bool = True
    forged: bool = False  # its agent never answers proof-of-GPU challenges
    # Switched off for `outage_min` minutes from minute `outage_at` of every `outage_every`
    # minutes after the fleet starts (0: never).
    outage_every: float = 0
    outage_at: float = 0
    outage_min: float = 0

    def is_down(self, minute: float) -> bool:
        """Whether the machine is off at `minute` since the fleet started."""
        at = minute % self.outage_every if self.outage_every else -1
        return self.outage_at <= at < self.outage_at + self.outage_min

    def seconds_to_change(self, minute: float) -> float:
        """Seconds from `minute` until the machine is switched off or on again (or the next
        cycle begins, which changes nothing: the caller looks again)."""
        at = minute % self.outage_every
        edges = (self.outage_at, self.outage_at + self.outage_min, self.outage_every)
        return min(edge - at for edge in edges if edge > at) * 60


# Names → private keys derived from the name: public, worthless, and the same on every machine.
DEMO_CONTRIBUTORS = ("alice", "bob", "carol")
DEMO_MACHINES = (
    DemoMachine("alice", "alice-rig-1", 4, 101),
    DemoMachine("alice", "alice-rig-2", 2, 102, outage_every=30, outage_at=3, outage_min=6),
    DemoMachine("bob", "bob-workstation", 2, 201),
    DemoMachine("carol", "carol-lab", 3, 301),
    DemoMachine("carol", "carol-own-jobs", 1, 302, attest_jobs=False),
    DemoMachine("bob", "bob-forged", 1, 202, forged=True),
)


def demo_account(name: str):
    return Account.from_key(keccak(text=f"omnitensor-demo-{name}"))


def demo_runs() -> bool:
    """The demo, and with it sign-in with its public keys, exists only in DEBUG demo runs."""
    return bool(settings.DEBUG and settings.DEMO_FLEET)


@functools.cache
def demo_addresses() -> frozenset[str]:
    """The demo wallets' addresses: anyone can sign as them, since their keys are public."""
    return frozenset(demo_account(name).address for name in DEMO_CONTRIBUTORS)


def wait_for_portal(portal: str, stop: threading.Event, timeout_s: float = 120) -> bool:
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{portal}/healthz", timeout=2):  # noqa: S310 - our URL
                return True
        except urllib.error.HTTPError:
            return True  # it answers; a 503 names a part that may still be starting
        except OSError:
            stop.wait(1)
    return False


class Scheduler(threading.Thread):
    """Attests jobs as the simulated GPUs start and finish them."""

    def __init__(self, portal: str, token: str, stop: threading.Event) -> None:
        super().__init__(name="demo-scheduler", daemon=True)
        from omnitensor_agent.api import PortalClient

        self.client = PortalClient(portal, token)
        self.events: queue.Queue = queue.Queue()
        self.stop = stop

    def run(self) -> None:
        from omnitensor_agent.api import NetworkError

        while not self.stop.is_set():
            try:
                body = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            for attempt in range(10):
                try:
                    response = self.client.request("POST", "/api/v1/scheduler/jobs", body)
                except NetworkError:
                    self.stop.wait(min(2**attempt, 30))
                    continue
                if response.status >= 500:
                    self.stop.wait(min(2**attempt, 30))
                    continue
                if response.status >= 400:
                    log.warning("scheduler: job %s refused: %s", body["job_id"], response.body)
                break


class AttestingCollector:
    """Wraps a simulated collector and tells the scheduler when each GPU's job changes."""

    def __init__(self, inner, scheduler: Scheduler | None) -> None:
        self.inner = inner
        self.name = inner.name
        self.scheduler = scheduler
        self.current: dict[str, tuple[str, datetime]] = {}

    def collect(self):
        readings = self.inner.collect()
        if self.scheduler is not None:
            for reading in readings:
                self._follow(reading)
        return readings

    def _follow(self, reading) -> None:
        running = self.current.get(reading.uuid)
        if running and running[0] != reading.job_id:
            self.scheduler.events.put(self._job(reading.uuid, *running, ended_at=reading.ts))
            del self.current[reading.uuid]
        if reading.job_id and reading.uuid not in self.current:
            self.current[reading.uuid] = (reading.job_id, reading.ts)
            self.scheduler.events.put(self._job(reading.uuid, reading.job_id, reading.ts))

    @staticmethod
    def _job(uuid: str, job_id: str, started: datetime, ended_at: datetime | None = None) -> dict:
        return {
            "job_id": job_id,
            "gpu_uuid": uuid,
            "kind": "training" if int(job_id[-1], 16) % 3 else "inference",
            "started_at": rfc3339(started),
            "ended_at": rfc3339_or_none(ended_at),
        }

    def close(self) -> None:
        self.inner.close()


def make_history(configs: dict):
    """The demo's week of history before its agents start (`portal.demo_history`): made only
    for a fresh demo database, so a restarted `make run` adds nothing."""
    from portal import demo_history

    history = demo_history.ensure(DEMO_MACHINES, configs)
    if history.made:
        steps = ", ".join(f"{name} {s:.1f} s" for name, s in history.steps.items())
        log.info(
            "demo: %s days of history made in %.1f s (%.1f s CPU; %s): %s samples in %s "
            "batches, %s jobs, %s challenges passed, %s epochs settled, %s raw samples older "
            "than a day pruned",
            demo_history.HISTORY_DAYS,
            history.seconds,
            history.cpu_seconds,
            steps,
            history.samples,
            history.batches,
            history.jobs,
            history.challenges,
            history.epochs,
            history.pruned,
        )
    else:
        log.info("demo: no history made: %s", history.skipped)
    return history


# alice hears about her machines by email (var/mail with the demo's file backend).
DEMO_ALERT_EMAIL = "alice@example.com"
DEMO_OFFLINE_AFTER_MIN = 3


def demo_alerts() -> None:
    """alice's verified email channel and a short offline threshold (once per database)."""
    from django.utils import timezone

    from contributors.models import DEFAULT_EVENTS, AlertChannel, AlertPreferences, EventKind
    from contributors.signin import contributor_for_sign_in

    alice = contributor_for_sign_in(demo_account("alice").address)
    AlertPreferences.objects.get_or_create(
        contributor=alice, defaults={"offline_after_min": DEMO_OFFLINE_AFTER_MIN}
    )
    AlertChannel.objects.get_or_create(
        contributor=alice,
        kind=AlertChannel.Kind.EMAIL,
        target=DEMO_ALERT_EMAIL,
        defaults={
            "label": "demo: the file backend, var/mail",
            "events": [*DEFAULT_EVENTS, EventKind.DIGEST],
            "verified_at": timezone.now(),
        },
    )


# The demo shows the leaderboard's privacy choices: carol is listed by a display name, bob
# chose not to be listed (and so appears on no board), alice keeps the default (her wallet).
DEMO_DISPLAY_NAMES = {"carol": "Carol's GPU Lab"}
DEMO_UNLISTED = ("bob",)


def demo_profiles() -> None:
    """carol's display name and bob's choice not to be listed (for a fresh demo database)."""
    from contributors.models import Contributor
    from contributors.signin import contributor_for_sign_in

    for name, display_name in DEMO_DISPLAY_NAMES.items():
        contributor = contributor_for_sign_in(demo_account(name).address)
        Contributor.objects.filter(pk=contributor.pk).update(
            display_name=display_name, leaderboard=Contributor.Leaderboard.NAME
        )
    for name in DEMO_UNLISTED:
        contributor = contributor_for_sign_in(demo_account(name).address)
        Contributor.objects.filter(pk=contributor.pk).update(
            leaderboard=Contributor.Leaderboard.HIDDEN
        )


def demo_prices(now=None) -> int:
    """An OMNIT price an hour over the history and the month ahead (once per database), as an
    admin would keep them, so the demo's exports carry values; a made-up, deterministic curve
    between 0.80 and 0.91 USD."""
    from django.utils import timezone

    from rewards.models import TokenPrice
    from rewards.models.prices import price_text

    currency = settings.PRICE_CURRENCY
    if TokenPrice.objects.filter(currency=currency).exists():
        return 0
    now = (now or timezone.now()).replace(minute=0, second=0, microsecond=0)
    hours = range(-24 * 9, 24 * 31)
    rows = [
        TokenPrice(
            currency=currency,
            at=now + timedelta(hours=h),
            price=price_text(Decimal(f"0.{80 + (h * 7) % 11:02d}{(h * 13) % 100:02d}")),
            notes="demo price (made up)",
        )
        for h in hours
    ]
    TokenPrice.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def demo_public_figures(stop: threading.Event) -> None:
    """/network/ and /leaderboard/ full on first load: their figures computed right after the
    history (with the recent epochs' manifests), then again once the agents have reported (the
    GPUs online now); beat keeps them fresh after that (PUBLIC_STATS_EVERY_S)."""
    from django.db import connections

    from rewards import manifests
    from rewards.public import network, store

    def compute() -> None:
        try:
            # The recent epochs' manifests, so that /network/ shows their digests at once
            # (beat's settlement publishes them from the next settled epoch on).
            manifests.publish_missing(limit=network.RECENT_EPOCHS)
            store.compute_all()
        except Exception:  # the demo goes on; beat computes them within a minute anyway
            log.exception("demo: computing the public figures failed")

    compute()

    def again() -> None:
        try:
            if not stop.wait(2 * settings.AGENT_REPORT_INTERVAL_S + 5):
                compute()
        finally:
            connections.close_all()

    threading.Thread(target=again, name="demo-public-figures", daemon=True).start()


# The demo's earlier claim pays what each contributor earned up to this long before the last
# settled epoch, so the rest is left to claim on first sign-in.
EARLIER_CLAIM_BEFORE = timedelta(days=2)


def after_history(fleet: "Fleet") -> None:
    """Once the history exists: one earlier claim per demo contributor, sent by the portal's
    relayer to the local chain (the watcher in beat confirms it, as on a public chain). Only
    for contributors without any claim yet, so a restart claims nothing again."""
    from rewards import relay
    from rewards.models import Epoch

    if fleet.history is None:
        return
    if not relay.available():
        log.info("demo: no local chain configured: no earlier claims")
        return
    last = Epoch.objects.order_by("-end").values_list("end", flat=True).first()
    if last is None:
        return
    cutoff = last - EARLIER_CLAIM_BEFORE
    for name in DEMO_CONTRIBUTORS:
        try:
            earlier_claim(demo_account(name).address, cutoff, fleet.stop)
        except Exception:  # the demo goes on without it; the log says why
            log.exception("demo: the earlier claim of %s failed", name)


def earlier_claim(address: str, cutoff: datetime, stop: threading.Event) -> None:
    from contributors.signin import contributor_for_sign_in
    from portal.lib.errors import Refused
    from rewards import claims, relay
    from rewards.models import Claim, RewardEntry
    from rewards.wei import sum_wei

    contributor = contributor_for_sign_in(address)
    if Claim.objects.filter(contributor=contributor).exists():
        return
    earned = sum_wei(
        RewardEntry.objects.filter(contributor=contributor, epoch__end__lte=cutoff), "amount_wei"
    )
    if not earned:
        return
    # The chain process starts beside this one and, when it starts, expires the vouchers of
    # the chain before: the voucher is made only once the chain answers.
    for _ in range(90):
        if _chain_answers():
            break
        if stop.wait(2):
            return
    else:
        log.warning("demo: the local chain did not answer: no earlier claim for %s", address)
        return
    claim = claims.issue(contributor, at_most_wei=earned)
    try:
        relay.relay(contributor, claim.pk)
    except Refused:
        Claim.objects.filter(pk=claim.pk, status=Claim.Status.ISSUED).delete()  # never sent
        raise
    log.info("demo: earlier claim of %s OMNIT for %s sent", earned // 10**18, address)


def _chain_answers() -> bool:
    from rewards import chain

    try:
        w3 = chain.web3()
        return w3 is not None and w3.eth.block_number >= 0
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False


class Fleet:
    def __init__(self, portal: str, state_dir: Path, machines=DEMO_MACHINES) -> None:
        self.portal = portal.rstrip("/")
        self.machines = tuple(machines)
        self.state_dir = state_dir
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.history = None  # what `demo_history.ensure` did, when `start(history=True)`

    def scheduler_token(self) -> str:
        path = self.state_dir / "scheduler-token"
        if path.exists():
            token = path.read_text().strip()
            if ServiceToken.authenticate(token, ServiceToken.Scope.SCHEDULER):
                return token
        _, token = ServiceToken.issue(ServiceToken.Scope.SCHEDULER, "demo scheduler")
        path.write_text(token)
        path.chmod(0o600)
        return token

    def enrolled_config(self, machine: DemoMachine):
        """The machine's agent config, enrolling it through the API the first time."""
        from omnitensor_agent.api import PortalClient
        from omnitensor_agent.collectors.simulate import SimulatedCollector
        from omnitensor_agent.config import AgentConfig, ConfigError
        from omnitensor_agent.runner import inventory

        from contributors.models import Node

        home = self.state_dir / machine.name
        home.mkdir(parents=True, exist_ok=True)
        path = home / "config.json"
        try:
            config = AgentConfig.load(path)
            node = Node.authenticate(config.node_token)
            if node is not None and not node.is_revoked:
                return config
        except ConfigError:
            pass
        # Imported here: sign-in asks this module which wallets are the demo's.
        from contributors.signin import contributor_for_sign_in

        owner = contributor_for_sign_in(demo_account(machine.owner).address)
        _, code = EnrollmentCode.issue(owner)
        gpus = inventory(SimulatedCollector(machine.gpus, seed=machine.seed).collect())
        response = PortalClient(self.portal).enroll(code, machine.name, gpus)
        if response.status != 201:
            raise RuntimeError(f"demo enrollment of {machine.name} failed: {response.body}")
        (home / "spool.db").unlink(missing_ok=True)
        config = AgentConfig(
            portal=self.portal,
            node_id=str(response.body["node_id"]),
            node_token=response.body["node_token"],
            sample_interval_s=response.body["sample_interval_s"],
            report_interval_s=response.body["report_interval_s"],
            collector="simulate",
            simulate=machine.gpus,
            spool_path=str(home / "spool.db"),
        )
        config.save(path)
        log.info("demo: enrolled %s (%s GPUs) for %s", machine.name, machine.gpus, machine.owner)
        return config

    def start(self, history: bool = False) -> None:
        """Enroll every machine (the first time), then, with `history`, give the demo its
        week of history (`portal.demo_history`, once per database), then start the agents."""
        from omnitensor_agent.collectors.simulate import SimulatedCollector
        from omnitensor_agent.runner import Runner

        self.state_dir.mkdir(parents=True, exist_ok=True)
        configs = {machine.name: self.enrolled_config(machine) for machine in self.machines}
        if history:
            self.history = make_history(configs)
            after_history(self)
            if self.history.made:
                demo_profiles()
        demo_alerts()
        demo_prices()
        scheduler = Scheduler(self.portal, self.scheduler_token(), self.stop)
        scheduler.start()
        self.threads.append(scheduler)
        for machine in self.machines:
            config = configs[machine.name]
            collector = AttestingCollector(
                SimulatedCollector(machine.gpus, seed=machine.seed),
                scheduler if machine.attest_jobs else None,
            )

            def run(machine=machine, config=config, collector=collector):
                started = time.monotonic()
                while not self.stop.is_set():
                    runner = Runner(
                        config, collector, config.spool_path, ignore_challenges=machine.forged
                    )
                    if not machine.outage_every:
                        runner.stop = self.stop  # one switch stops every agent
                        self._run_agent(runner, machine)
                        return
                    # Up until the outage, then off (the agent stopped, as in a power cut).
                    minute = (time.monotonic() - started) / 60
                    until_change = machine.seconds_to_change(minute)
                    if machine.is_down(minute):
                        log.info("demo: %s is off for %.0f s", machine.name, until_change)
                        self.stop.wait(until_change)
                        continue
                    agent = threading.Thread(target=self._run_agent, args=(runner, machine))
                    agent.start()
                    self.stop.wait(until_change)
                    runner.stop.set()
                    agent.join(timeout=30)

            thread = threading.Thread(target=run, name=f"agent-{machine.name}", daemon=True)
            thread.start()
            self.threads.append(thread)
        if history:
            demo_public_figures(self.stop)

    @staticmethod
    def _run_agent(runner, machine: DemoMachine) -> None:
        try:
            runner.run()
        except Exception:
            log.exception("demo agent %s stopped", machine.name)


def run_fleet(portal: str) -> None:
    fleet = Fleet(portal, Path(settings.VAR_DIR) / "demo")
    if not wait_for_portal(portal, fleet.stop):
        raise RuntimeError(f"the portal at {portal} did not answer")
    fleet.start(history=True)
    total = sum(m.gpus for m in DEMO_MACHINES)
    log.info(
        "demo fleet: %s machines, %s GPUs reporting to %s; sign in as alice, bob or carol "
        "from the sign-in page",
        len(DEMO_MACHINES),
        total,
        portal,
    )
    try:
        while not fleet.stop.is_set():
            fleet.stop.wait(1)
    finally:
        fleet.stop.set()
        for thread in fleet.threads:
            thread.join(timeout=10)
