"""Reward models, by topic: attested jobs (`jobs`), the GPU performance catalog and reward
policies (`catalog`), epochs, the ledger and its day totals (`ledger`), the epochs' published
manifests (`manifests`), claims with their vouchers, events and the watcher's cursor
(`claims`), token prices for tax-ready exports (`prices`), and the usage sums the drains add
up for settlement (`usage`). DESIGN.md "Reward definitions" is the reference for all of it;
`rewards.settlement` computes it.
"""

from rewards.models.catalog import GpuModel, RewardPolicy
from rewards.models.claims import ChainCursor, Claim, ClaimEvent, Relayer
from rewards.models.jobs import Job
from rewards.models.ledger import EarningDay, Epoch, HeldOut, RewardEntry
from rewards.models.manifests import EpochManifest
from rewards.models.prices import TokenPrice
from rewards.models.usage import AccumulatedSince, UsageAccumulator

__all__ = [
    "AccumulatedSince",
    "ChainCursor",
    "Claim",
    "ClaimEvent",
    "EarningDay",
    "Epoch",
    "EpochManifest",
    "GpuModel",
    "HeldOut",
    "Job",
    "Relayer",
    "RewardEntry",
    "RewardPolicy",
    "TokenPrice",
    "UsageAccumulator",
]
