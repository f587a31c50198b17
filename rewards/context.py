"""What every page may say about the reward policy in force: the epoch's length, the pools
and the grace, read from the policy (the demo's epochs are 5 minutes, production's an hour),
never written into a template. Lazy: a page that does not mention it costs no query."""

from dataclasses import dataclass

from django.utils import timezone
from django.utils.functional import SimpleLazyObject


def span_text(seconds: int) -> str:
    """3600 → "hour", 300 → "5 minutes", 7200 → "2 hours", 90 → "90 seconds"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count:,} {unit}s"
    return f"{seconds:,} seconds"


@dataclass(frozen=True)
class PolicyInForce:
    epoch_length_s: int
    grace_s: int
    compute_pool_wei: int
    idle_pool_wei: int

    @property
    def epoch(self) -> str:
        """ "hour", "5 minutes": reads after "every" and "per"."""
        return span_text(self.epoch_length_s)

    @property
    def grace(self) -> str:
        """ "1 minute", "15 minutes": reads with "after"."""
        text = span_text(self.grace_s)
        return text if text[0].isdigit() else f"1 {text}"


def policy_in_force() -> PolicyInForce:
    from rewards.settlement import policy_at

    policy = policy_at(timezone.now())
    return PolicyInForce(
        policy.epoch_length_s, policy.grace_s, policy.compute_pool_wei, policy.idle_pool_wei
    )


def policy(request) -> dict:
    return {"policy": SimpleLazyObject(policy_in_force)}
