"""`python manage.py estimate_rewards --model "…" --hours 24 --utilization 60`.

What a GPU of that model, busy with attested jobs for that long at that utilization, would
have earned at the network totals of the last settled epochs (and, with --idle-hours and
--committed-gib, what it would earn idle). An estimate: the network changes every epoch.
"""

from decimal import Decimal, InvalidOperation
from fractions import Fraction

from django.core.management.base import BaseCommand, CommandError

from rewards.estimate import estimate
from rewards.wei import WEI_PER_OMNIT, rounded_decimal


def _number(text: str, name: str, low: Fraction, high: Fraction | None = None) -> Fraction:
    try:
        value = Fraction(Decimal(text))
    except (InvalidOperation, ValueError):
        raise CommandError(f"--{name} must be a number, not {text!r}") from None
    if value < low or (high is not None and value > high):
        raise CommandError(f"--{name} must be between {low} and {high or 'any'}")
    return value


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
        result = estimate(opts["model"], hours, util, idle_hours, gib, opts["epochs"])
        rated = (
            f'pattern "{result.pattern}"'
            if result.pattern
            else "the catalog default: not rated yet"
        )
        self.stdout.write(f"{opts['model']}: weight {result.weight} ({rated})")
        self.stdout.write(f"at the network totals of {result.basis}:")
        for label, wei in (
            ("compute", result.compute_wei),
            ("idle", result.idle_wei),
            ("total", result.total_wei),
        ):
            omnit = rounded_decimal(Fraction(wei) / WEI_PER_OMNIT, places=6)
            self.stdout.write(f"  {label:8} ≈ {omnit} OMNIT ({wei} wei)")
