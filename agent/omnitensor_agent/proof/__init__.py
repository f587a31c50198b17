"""Proof of GPU (PROOF.md beside the package): exact int8 products committed in a Merkle tree.

``spec`` is the protocol's arithmetic, ``backends`` runs it on NumPy, PyTorch or CuPy,
``solution`` turns digests into a root and reveals, ``prover`` answers the portal's challenges
in a thread of its own, ``selftest`` is ``omnitensor-agent verify``.
"""

from omnitensor_agent.proof.backends import (
    CHOICES,
    Backend,
    BackendUnavailable,
    Cancelled,
    DeviceNotFound,
    NumpyBackend,
    make_backend,
)
from omnitensor_agent.proof.solution import Solution, solve

__all__ = [
    "CHOICES",
    "Backend",
    "BackendUnavailable",
    "Cancelled",
    "DeviceNotFound",
    "NumpyBackend",
    "Solution",
    "make_backend",
    "solve",
]
