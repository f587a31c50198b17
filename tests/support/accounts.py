"""A contributor's machines as the pages see them: rigs that enroll and report through the
agent API like real agents, attested jobs, settled epochs and hour rollups, in two sizes
(`small_account`, then `grow`) so that tests can check that query counts do not grow."""

from datetime import timedelta

from django.utils import timezone

from contributors.models import GPU, GpuHour
from rewards import settlement
from rewards.models import Epoch
from tests.support.agent_api import nvml_uuid
from tests.support.rewards import H100, RTX_4090, Rig, attest, gpu, ingest_all, samples

HOUR = timedelta(hours=1)


def hour0():
    return timezone.now().replace(minute=0, second=0, microsecond=0)


class Account:
    """A contributor's machines, reporting through the agent API like real agents.

    GPU 0 runs an attested job (compute and idle rewards), GPU 1 is disabled by its owner (held
    out), GPU 2 never reports (offline); the others sit idle with 1 GiB used.
    """

    def __init__(self, owner, tag: str):
        self.owner = owner
        self.tag = tag
        self.rigs: list[Rig] = []
        self.uuids: list[str] = []

    def uuid(self, index: int) -> str:
        return nvml_uuid(f"{self.tag}-{index:02d}")

    def add_gpus(self, count: int) -> None:
        start = len(self.uuids)
        inventory = [
            gpu(self.uuid(i), H100 if i % 3 != 2 else RTX_4090) for i in range(start, start + count)
        ]
        self.rigs.append(Rig(self.owner, inventory))
        self.uuids += [g["uuid"] for g in inventory]
        # Enrolled long ago: every settled epoch below lies in the GPUs' lifetime.
        GPU.objects.filter(uuid__in=self.uuids).update(
            first_seen_at=timezone.now() - timedelta(days=60)
        )
        GPU.objects.filter(uuid=self.uuid(1)).update(enabled=False)

    def report_epoch(self, start, step: int = 120) -> None:
        """Samples every `step` s through one epoch (each covers up to the 30 s max gap)."""
        attest(f"job-{self.tag}-{start:%H}", self.uuids[0], start, start + HOUR)
        for rig in self.rigs:
            batch = []
            for item in rig.gpus:
                uuid = item["uuid"]
                if uuid == self.uuid(2):
                    continue  # offline
                total = item["memory_total_mib"]
                if uuid == self.uuids[0]:
                    job = f"job-{self.tag}-{start:%H}"
                    batch += samples(uuid, start, seconds=range(0, 3600, step), util=50,
                                     used=40000, total=total, job=job)  # fmt: skip
                else:
                    batch += samples(uuid, start, seconds=range(0, 3600, step), used=1024,
                                     total=total)  # fmt: skip
            rig.report(batch)

    def report_live(self, minutes: int = 10) -> None:
        now = timezone.now()
        for rig in self.rigs:
            batch = []
            for item in rig.gpus:
                if item["uuid"] == self.uuid(2):
                    continue
                batch += samples(
                    item["uuid"], now - timedelta(minutes=minutes),
                    seconds=range(0, minutes * 60, 60), util=40, used=2048,
                    total=item["memory_total_mib"],
                )  # fmt: skip
            rig.report(batch)

    def fill_hour_rollups(self, days: int) -> None:
        """Hour rollups back to `days` ago, before anything the agents reported."""
        oldest_reported = hour0() - 10 * HOUR
        GpuHour.objects.bulk_create(
            GpuHour(gpu=row, start=oldest_reported - h * HOUR, samples=360, online_s=3600,
                    n_util=360, sum_util=360 * 30.0, max_util=80, sum_mem=360 * 1000.0,
                    max_mem=2000)
            for row in GPU.objects.filter(uuid__in=self.uuids)
            for h in range(1, days * 24)
        )  # fmt: skip


def settle_until(end) -> list[Epoch]:
    return settlement.settle_due(until=end)


def small_account(owner, tag="a") -> Account:
    """2 GPUs, 1 settled epoch, a day of rollups from what they reported."""
    account = Account(owner, tag)
    account.add_gpus(2)
    account.report_epoch(hour0() - 7 * HOUR)
    account.report_live()
    ingest_all()
    assert len(settle_until(hour0() - 6 * HOUR)) == 1
    return account


def grow(account: Account) -> None:
    """To 12 GPUs, 5 settled epochs and 30 days of hour rollups."""
    account.add_gpus(10)
    for hours_ago in (6, 5, 4, 3):
        account.report_epoch(hour0() - hours_ago * HOUR)
    account.report_live()
    account.fill_hour_rollups(30)
    ingest_all()
    assert len(settle_until(hour0() - 2 * HOUR)) == 4
    assert Epoch.objects.count() == 5
