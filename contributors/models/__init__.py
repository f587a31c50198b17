"""The people and machines of the network, by topic: accounts (contributors, wallets, sign-in
nonces), the fleet (nodes, GPUs, enrollment codes, service tokens, flags) and telemetry
(batches, samples, rollups), verification (proof-of-GPU challenges, exemptions,
scheduler probes) and alerts (channels, preferences, conditions, events, deliveries)."""

from contributors.models.accounts import Contributor, SignInNonce, Wallet, validate_eth_address
from contributors.models.alerts import (
    DEFAULT_EVENTS,
    AlertChannel,
    AlertCondition,
    AlertCursor,
    AlertDelivery,
    AlertEvent,
    AlertPreferences,
    EventKind,
)
from contributors.models.fleet import (
    GPU,
    EnrollmentCode,
    GpuFlag,
    HashedToken,
    Node,
    NodeFlag,
    ServiceToken,
    is_recent,
)
from contributors.models.telemetry import (
    GpuHour,
    GpuMinute,
    RollupDue,
    Sample,
    TelemetryBatch,
)
from contributors.models.verification import Challenge, Exemption, Probe

__all__ = [
    "DEFAULT_EVENTS",
    "GPU",
    "AlertChannel",
    "AlertCondition",
    "AlertCursor",
    "AlertDelivery",
    "AlertEvent",
    "AlertPreferences",
    "Challenge",
    "Contributor",
    "EnrollmentCode",
    "EventKind",
    "Exemption",
    "GpuFlag",
    "GpuHour",
    "GpuMinute",
    "HashedToken",
    "Node",
    "NodeFlag",
    "Probe",
    "RollupDue",
    "Sample",
    "ServiceToken",
    "SignInNonce",
    "TelemetryBatch",
    "Wallet",
    "is_recent",
    "validate_eth_address",
]
