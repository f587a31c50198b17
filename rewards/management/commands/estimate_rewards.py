"""`python manage.py estimate_rewards --model "…" --hours 24 --utilization 60`.

What a GPU of that model, busy with attested jobs for that long at that utilization, would
have earned at the network totals of the last settled epochs (and, with --idle-hours and
--committed-gib, what it would earn idle). An estimate: the network changes every epoch.
"""

from decimal import Decimal, InvalidOperation
from fractions import Fraction

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from rewards.catalog import Catalog
from rewards.models import Epoch
from rewards.settlement import policy_at
from rewards.wei import WEI_PER_OMNIT, rounded_decimal


def _number(text: str, name: str, low: Fraction, high: Fraction | None = None) -> Fraction:
    try:
        value = Fraction(Decimal(text))
    except (InvalidOperation, ValueError):
        raise CommandError(f"--{name} must be a number, not {text!r}") from None
    if value < low or (high is not None and value > high):
        raise CommandError(f"--{name} must be between {low} and {high or 'any'}")
    return value


def epoch_share(pool: int, total: Fraction, mine: Fraction) -> Fraction:
    """The wei `mine` units would get of a pool the network shared with `total` units."""
    return Fraction(pool) * mine / (total + mine) if mine else Fraction(0)


class Command(BaseCommand):
    help = "Estimate what a GPU would earn, at the network totals of the last settled epochs."

    def add_arguments(self, parser):
        parser.add_argument("--model", required=True, help='e.g. "NVIDIA GeForce RTX 4090"')
        parser.add_argument("--hours", required=True, help="hours busy with attested jobs")
        parser.add_argument("--utilization", required=True, help="average GPU utilization, %%")
        parser.add_argument("--idle-hours", default="0", help="hours connected without a job")
        parser.add_argument("--committed-gib", default="0", help="committed memory while idle")
        parser.add_argument("--epochs", type=int, default=24, help="settled epochs to average")

    def handle(self, *args, **opts):
        hours = _number(opts["hours"], "hours", Fraction(0))
        util = _number(opts["utilization"], "utilization", Fraction(0), Fraction(100))
        idle_hours = _number(opts["idle_hours"], "idle-hours", Fraction(0))
        gib = _number(opts["committed_gib"], "committed-gib", Fraction(0))
        pattern, weight = Catalog.load().match(opts["model"])
        rated = f'pattern "{pattern}"' if pattern else "the catalog default: not rated yet"
        self.stdout.write(f"{opts['model']}: weight {weight} ({rated})")

        epochs = list(Epoch.objects.filter(status=Epoch.Status.SETTLED)[: opts["epochs"]])
        compute_wei = idle_wei = Fraction(0)
        seconds = 0
        if epochs:
            for epoch in epochs:
                length = int((epoch.end - epoch.start).total_seconds())
                seconds += length
                busy_units = length * util / 100 * Fraction(weight)
                idle_units = length * gib
                compute_wei += epoch_share(
                    epoch.compute_pool_wei, Fraction(Decimal(epoch.compute_units)), busy_units
                )
                idle_wei += epoch_share(
                    epoch.idle_pool_wei, Fraction(Decimal(epoch.idle_units)), idle_units
                )
            basis = f"the last {len(epochs)} settled epoch(s)"
        else:
            # Nobody else has earned anything yet: a single GPU would get the whole pool.
            policy = policy_at(timezone.now())
            seconds = policy.epoch_length_s
            compute_wei = Fraction(policy.compute_pool_wei if hours and util and weight else 0)
            idle_wei = Fraction(policy.idle_pool_wei if idle_hours and gib else 0)
            basis = "no settled epochs yet (alone in the network)"
        per_second_compute = compute_wei / seconds
        per_second_idle = idle_wei / seconds
        compute = per_second_compute * hours * 3600
        idle = per_second_idle * idle_hours * 3600
        self.stdout.write(f"at the network totals of {basis}:")
        for label, wei in (("compute", compute), ("idle", idle), ("total", compute + idle)):
            omnit = rounded_decimal(wei / WEI_PER_OMNIT, places=6)
            self.stdout.write(f"  {label:8} ≈ {omnit} OMNIT ({int(wei)} wei)")
