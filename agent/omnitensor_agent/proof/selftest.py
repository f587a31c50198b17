"""``omnitensor-agent verify``: solve a random challenge locally and check it.

The chosen backend solves; a few random rows are then recomputed independently with NumPy
(the way the portal checks them) and each digest, leaf and Merkle path is checked against the
root. A known answer from ``proof-vectors.json`` (n=128, 3 rounds, zero seed) is checked too,
so a bug shared by the backend and the NumPy code cannot pass unnoticed.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from omnitensor_agent.proof import spec
from omnitensor_agent.proof.backends import Backend
from omnitensor_agent.proof.solution import Solution, solve

KNOWN_SEED = bytes(32)
KNOWN_N, KNOWN_ROUNDS = 128, 3
KNOWN_ROOT = "51ccc7929461514c02b53317da8e43fad3c93fa079caf4456422ef74b463af09"
TARGET_S = 3.0  # default GPU run length
MAX_ROUNDS = 4096
SLICE_BYTES = 64 * 1024 * 1024


def reference_digests(seed: bytes, n: int, wanted: Iterable[tuple[int, int]]) -> dict:
    """(round, row) → digest (uint64) from NumPy alone, B made in slices of rows."""
    wanted = sorted(set(wanted))
    lhs = np.stack(
        [spec.matrix_rows(spec.key(seed, spec.round_label(r)), n, i, 1)[0] for r, i in wanted]
    ).astype(np.float64)
    product = np.zeros((len(wanted), n), dtype=np.float64)
    step = max(1, SLICE_BYTES // (8 * n))
    key_b = spec.key(seed, b"B")
    for first in range(0, n, step):
        count = min(step, n - first)
        b_slice = spec.matrix_rows(key_b, n, first, count).astype(np.float64)
        product += lhs[:, first : first + count] @ b_slice
    s, w = spec.digest_vectors(seed, n)
    digests = spec.row_digests(product.astype(np.int64), s, w)
    return {pair: int(d) for pair, d in zip(wanted, digests, strict=True)}


def check_rows(seed: bytes, solution: Solution, wanted: list[tuple[int, int]]) -> list[str]:
    """Problems found in the solution's answer for these rows (empty: all good)."""
    problems = []
    reference = reference_digests(seed, solution.n, wanted)
    for r, i in wanted:
        entry = solution.reveal(r, i)
        leaf = bytes.fromhex(entry["leaf"])
        at = (i % spec.LEAF_ROWS) * spec.DIGEST_BYTES
        got = int.from_bytes(leaf[at : at + spec.DIGEST_BYTES], "little")
        if got != reference[(r, i)]:
            problems.append(
                f"round {r} row {i}: digest {got:016x}, expected {reference[r, i]:016x}"
            )
        node = spec.leaf_hash(r, i // spec.LEAF_ROWS, leaf)
        path = [bytes.fromhex(h) for h in entry["path"]]
        index = solution.leaf_index(r, i)
        if spec.root_from_path(node, index, solution.leaf_count, path) != solution.root:
            problems.append(f"round {r} row {i}: its Merkle path does not lead to the root")
    return problems


@dataclass
class Report:
    backend: str
    device: str
    n: int
    rounds: int
    seconds: float
    tops: float
    checked_rows: int
    known_answer: bool
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.known_answer and not self.problems

    def to_json(self) -> dict:
        return {**asdict(self), "result": "PASS" if self.passed else "FAIL"}


def run(
    backend: Backend,
    *,
    n: int | None = None,
    rounds: int | None = None,
    device: str | int | None = None,
    checks: int = 8,
    rng: random.Random | None = None,
) -> Report:
    rng = rng or random.Random()
    on_cpu = backend.name == "numpy"
    n = n or (1024 if on_cpu else 8192)
    spec.check_shape(n, rounds or 1)
    known = solve(backend, KNOWN_SEED, KNOWN_N, KNOWN_ROUNDS, device=device)  # also a warm-up
    known_ok = known.root.hex() == KNOWN_ROOT
    if rounds is None:
        if on_cpu:
            rounds = 1
        else:  # size the run to about TARGET_S from a short timed one
            probe = solve(backend, secrets.token_bytes(32), n, 2, device=device)
            per_round = max(probe.elapsed_s / 2, 1e-6)
            rounds = max(1, min(MAX_ROUNDS, math.ceil(TARGET_S / per_round)))
    seed = secrets.token_bytes(32)
    started = time.perf_counter()
    solution = solve(backend, seed, n, rounds, device=device)
    seconds = time.perf_counter() - started
    wanted = sorted({(rng.randrange(rounds), rng.randrange(n)) for _ in range(checks)})
    return Report(
        backend=backend.name,
        device=backend.device_name(device),
        n=n,
        rounds=rounds,
        seconds=round(seconds, 4),
        tops=round(2 * n**3 * rounds / seconds / 1e12, 4),
        checked_rows=len(wanted),
        known_answer=known_ok,
        problems=check_rows(seed, solution, wanted)
        + ([] if known_ok else [f"known answer: root {known.root.hex()}, expected {KNOWN_ROOT}"]),
    )
