"""A solved challenge: the Merkle root to commit and what a reveal needs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from omnitensor_agent.proof import spec
from omnitensor_agent.proof.backends import Backend, StopCheck, _never


@dataclass
class Solution:
    n: int
    rounds: int
    digests: np.ndarray  # (rounds, n) uint64, row order
    elapsed_s: float  # the device work: generation, products, digests back on the host
    levels: list[list[bytes]] = field(repr=False)

    @classmethod
    def from_digests(cls, digests: np.ndarray, elapsed_s: float) -> Solution:
        rounds, n = digests.shape
        per_round = n // spec.LEAF_ROWS
        leaves = [
            spec.leaf_hash(r, leaf, _leaf_bytes(digests, r, leaf))
            for r in range(rounds)
            for leaf in range(per_round)
        ]
        return cls(n, rounds, digests, elapsed_s, spec.merkle_levels(leaves))

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    @property
    def leaf_count(self) -> int:
        return len(self.levels[0])

    def leaf_index(self, round_: int, row: int) -> int:
        if not (0 <= round_ < self.rounds and 0 <= row < self.n):
            raise IndexError(f"no row {row} in round {round_} (n={self.n}, rounds={self.rounds})")
        return round_ * (self.n // spec.LEAF_ROWS) + row // spec.LEAF_ROWS

    def leaf_bytes(self, round_: int, row: int) -> bytes:
        """The 512 bytes of the leaf that holds ``row`` of round ``round_``."""
        self.leaf_index(round_, row)
        return _leaf_bytes(self.digests, round_, row // spec.LEAF_ROWS)

    def path(self, round_: int, row: int) -> list[bytes]:
        return spec.merkle_path(self.levels, self.leaf_index(round_, row))

    def reveal(self, round_: int, row: int) -> dict:
        """One entry of the reveal body (PROOF.md section 4)."""
        return {
            "round": round_,
            "row": row,
            "leaf": self.leaf_bytes(round_, row).hex(),
            "path": [h.hex() for h in self.path(round_, row)],
        }


def _leaf_bytes(digests: np.ndarray, round_: int, leaf: int) -> bytes:
    rows = digests[round_, leaf * spec.LEAF_ROWS : (leaf + 1) * spec.LEAF_ROWS]
    return rows.astype("<u8").tobytes()


def solve(
    backend: Backend,
    seed: bytes,
    n: int,
    rounds: int,
    *,
    device: str | int | None = None,
    should_stop: StopCheck = _never,
) -> Solution:
    spec.check_shape(n, rounds)
    started = time.perf_counter()
    digests = backend.digests(seed, n, rounds, device=device, should_stop=should_stop)
    return Solution.from_digests(digests, time.perf_counter() - started)
