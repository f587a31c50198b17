"""What settlement needs of each GPU's telemetry, added up by the drains as samples arrive.

One row per (device, epoch, job the samples named): the exact sums DESIGN.md "Coverage",
"Busy" and "Idle units" are made of, for the samples of that group. `rewards.accumulators`
writes and reads them; settlement then reads one row or two per GPU and epoch instead of every
raw sample.
"""

from django.db import models

from rewards.wei import WeiField


class UsageAccumulator(models.Model):
    """The samples of one device (a GPU or MIG instance) in one epoch that named one job
    ("" for none): how long they covered, how much of it inside that job's attested time, and
    what that time was worth.

    Times are microseconds; `first_us` and `last_us` bound the covered intervals, counted
    from the epoch's start. The newest sample of a device is counted up to `ts + max_gap`
    until its next sample takes back what it cuts. `dirty` says a sample arrived out of order
    for this device and epoch: settlement recomputes the device from its raw samples.
    """

    # Served by the unique (gpu, start, job_id) index.
    gpu = models.ForeignKey(
        "contributors.GPU", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    start = models.DateTimeField()
    end = models.DateTimeField()
    max_gap_s = models.PositiveIntegerField()
    job_id = models.CharField(max_length=128, blank=True)
    covered_us = models.BigIntegerField(default=0)
    first_us = models.BigIntegerField()
    last_us = models.BigIntegerField()
    # The covered µs inside the named job's attested time (`job_from_us`..`job_until_us`, as
    # known when the samples were added; no start: not attested, no end: running), their
    # Σ µs * utilization % (an exact decimal) and the µs whose sample had none.
    busy_us = models.BigIntegerField(default=0)
    busy_util_us = models.CharField(max_length=100, default="0")
    busy_null_us = models.BigIntegerField(default=0)
    job_from_us = models.BigIntegerField(null=True)
    job_until_us = models.BigIntegerField(null=True)
    # Σ covered µs * (memory_total_mib - memory_used_mib), of the busy part too, and the
    # extremes of that MiB.
    avail_mib_us = WeiField(default=0)
    busy_avail_mib_us = WeiField(default=0)
    min_avail_mib = models.BigIntegerField()
    max_avail_mib = models.BigIntegerField()
    dirty = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["gpu", "start", "job_id"], name="usage_accumulator_gpu_start_job"
            )
        ]
        # Settlement reads the rows of epochs ending after the window's start: the window's own
        # and the few later ones not settled yet (`rewards.accumulators.usage`).
        indexes = [models.Index(fields=["end"], name="usage_accumulator_end")]

    def __str__(self) -> str:
        return f"GPU {self.gpu_id} from {self.start.isoformat()} ({self.job_id or 'no job'})"


class AccumulatedSince(models.Model):
    """From when the accumulators hold every stored sample (one row, or none).

    A new installation accumulates from its first sample; an existing one from when
    `manage.py rebuild_usage` rebuilt them from its raw samples. Before that moment (or with
    no row) settlement reads the raw samples instead.
    """

    at = models.DateTimeField()
    # The settings' policy (epoch length/max gap) the rows were cut on where no stored one is.
    grid = models.CharField(max_length=40, blank=True)

    def __str__(self) -> str:
        return f"accumulators complete since {self.at.isoformat()}"
