"""What a GPU would earn, at the network totals of the last settled epochs.

Used by `manage.py estimate_rewards` and the public /estimate/ page. An estimate: each epoch
shares fixed pools among whoever is online, so a newcomer's share is the pool times their units
over the network's units plus theirs. Exact rationals throughout; wei come out rounded down.
"""

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from django.utils import timezone

from rewards.catalog import Catalog
from rewards.models import Epoch
from rewards.settlement import policy_at


@dataclass(frozen=True)
class Estimate:
    model: str
    pattern: str | None
    weight: Decimal
    basis: str
    epochs: int
    compute_wei: int
    idle_wei: int
    compute_per_hour_wei: int
    idle_per_hour_wei: int
    network_compute_units_per_hour: Fraction
    network_idle_units_per_hour: Fraction
    compute_pool_per_hour_wei: int
    idle_pool_per_hour_wei: int

    @property
    def total_wei(self) -> int:
        return self.compute_wei + self.idle_wei


def epoch_share(pool: int, total: Fraction, mine: Fraction) -> Fraction:
    """The wei `mine` units would get of a pool the network shared with `total` units."""
    return Fraction(pool) * mine / (total + mine) if mine else Fraction(0)


def estimate(
    model: str,
    hours: Fraction,
    utilization_pct: Fraction,
    idle_hours: Fraction = Fraction(0),
    committed_gib: Fraction = Fraction(0),
    epochs: int = 24,
) -> Estimate:
    pattern, rating = Catalog.load().match(model)
    weight = Fraction(rating)
    settled = list(Epoch.objects.filter(status=Epoch.Status.SETTLED).order_by("-start")[:epochs])
    compute = idle = Fraction(0)
    seconds = 0
    net_compute = net_idle = Fraction(0)
    pool_compute = pool_idle = 0
    if settled:
        for epoch in settled:
            length = int((epoch.end - epoch.start).total_seconds())
            seconds += length
            busy_units = length * utilization_pct / 100 * weight
            compute += epoch_share(
                epoch.compute_pool_wei, Fraction(epoch.compute_units), busy_units
            )
            idle += epoch_share(
                epoch.idle_pool_wei, Fraction(epoch.idle_units), length * committed_gib
            )
            net_compute += Fraction(epoch.compute_units)
            net_idle += Fraction(epoch.idle_units)
            pool_compute += epoch.compute_pool_wei
            pool_idle += epoch.idle_pool_wei
        basis = f"the last {len(settled)} settled epoch(s)"
    else:
        # Nobody has earned anything yet: a single GPU would get the whole pool.
        policy = policy_at(timezone.now())
        seconds = policy.epoch_length_s
        compute = Fraction(policy.compute_pool_wei if hours and utilization_pct and weight else 0)
        idle = Fraction(policy.idle_pool_wei if idle_hours and committed_gib else 0)
        pool_compute, pool_idle = policy.compute_pool_wei, policy.idle_pool_wei
        basis = ""  # the page says it plainly: no epoch settled, the GPU alone takes the pools
    per_hour = Fraction(3600, seconds)
    compute_per_hour = compute * per_hour
    idle_per_hour = idle * per_hour
    return Estimate(
        model=model,
        pattern=pattern,
        weight=rating,
        basis=basis,
        epochs=len(settled),
        compute_wei=int(compute_per_hour * hours),
        idle_wei=int(idle_per_hour * idle_hours),
        compute_per_hour_wei=int(compute_per_hour),
        idle_per_hour_wei=int(idle_per_hour),
        network_compute_units_per_hour=net_compute * per_hour,
        network_idle_units_per_hour=net_idle * per_hour,
        compute_pool_per_hour_wei=int(pool_compute * per_hour),
        idle_pool_per_hour_wei=int(pool_idle * per_hour),
    )
