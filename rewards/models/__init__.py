"""Reward models, by topic: attested jobs (`jobs`), the GPU performance catalog and reward
policies (`catalog`), epochs, the ledger and its day totals (`ledger`), the epochs' published
manifests (`manifests`), claims with their vouchers, events and the watcher's cursor
(`claims`), and token prices for tax-ready exports (`prices`). DESIGN.md "Reward definitions"
is the reference for all of it; `rewards.settlement` computes it.
"""

from rewards.models.catalog import GpuModel, RewardPolicy
from rewards.models.claims import ChainCursor, Claim, ClaimEvent, Relayer
from rewards.models.jobs import Job
from rewards.models.ledger import EarningDay, Epoch, HeldOut, RewardEntry
from rewards.models.manifests import EpochManifest
from rewards.models.prices import TokenPrice

__all__ = [
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
]
