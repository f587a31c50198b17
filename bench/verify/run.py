"""Proof of GPU at production sizes: what a verification costs the portal, what the work costs
a CPU, and the ratio between them.

    python bench/verify/run.py [--n 8192] [--model H100] [--checks 16] [--rounds-timed 1]

Reads the challenge parameters from the portal's settings (GPU_VERIFICATION_*; the same
environment variables change them) and the claimed model's int8 TOPS from the catalog's
seed (rewards/migrations/0008_proof_of_gpu.py), then measures on this machine:

- the portal's CPU per verification: the worker's `proof.recompute` of `checks` rows spread
  over distinct rounds (the worst case), the Merkle paths followed, best of 3;
- the agent's NumPy solver (`omnitensor_agent.proof`, what an agent without a GPU runs) on
  `--rounds-timed` full rounds of the production n, extrapolated to the challenge's rounds;
- the honest agent's host-side cost: the Merkle tree over all the challenge's leaves.

Prints the figures and the ratio; never a timed test.
"""

import argparse
import math
import os
import resource
import secrets
import sys
import time
from importlib import import_module
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DEBUG", "true")  # reads settings only: no secret key needed

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from omnitensor_agent.proof import Solution, make_backend, solve  # noqa: E402

from contributors.verification import proof  # noqa: E402

TERA = 10**12


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(runs: int, work) -> float:
    times = []
    for _ in range(runs):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=settings.GPU_VERIFICATION_N)
    parser.add_argument("--model", default="H100", help="a catalog pattern (default H100)")
    parser.add_argument("--checks", type=int, default=settings.GPU_VERIFICATION_CHECKS)
    parser.add_argument("--rounds-timed", type=int, default=1)
    args = parser.parse_args()

    tops = import_module("rewards.migrations.0008_proof_of_gpu").INT8_TOPS[args.model]
    expected = tops * TERA * settings.GPU_VERIFICATION_EFFICIENCY_PCT / 100
    n = args.n
    per_round = 2 * n**3
    rounds = math.ceil(settings.GPU_VERIFICATION_WORK_S * expected / per_round)
    rounds = max(1, min(settings.GPU_VERIFICATION_MAX_ROUNDS, rounds))
    expected_s = per_round * rounds / expected
    deadline_s = (
        expected_s * settings.GPU_VERIFICATION_DEADLINE_FACTOR
        + settings.GPU_VERIFICATION_ALLOWANCE_S
    )
    print(f"machine: {os.cpu_count()} CPUs; numpy {np.__version__}")
    print(
        f"challenge for an {args.model} ({tops} int8 TOPS peak, "
        f"{settings.GPU_VERIFICATION_EFFICIENCY_PCT} % expected = {expected / TERA:.0f} TOPS): "
        f"n={n}, rounds={rounds}, {per_round * rounds / TERA:,.0f} T int8 ops, "
        f"{expected_s:.2f} s expected on the GPU, commit deadline {deadline_s:.1f} s"
    )

    seed = secrets.token_bytes(32)
    # The portal: checks rows in distinct rounds (each round needs its A row; B is shared).
    pairs = [(r % rounds, (r * 977) % n) for r in range(args.checks)]
    portal_cpu = best_of(3, lambda: proof.recompute(seed, n, pairs))
    print(f"portal, one verification ({args.checks} rows recomputed): {portal_cpu:.3f} s CPU")

    # The NumPy solver: full rounds of production size, extrapolated.
    timed = max(1, min(args.rounds_timed, rounds))
    started = time.perf_counter()
    solution = solve(make_backend("numpy"), seed, n, timed)
    wall = time.perf_counter() - started
    per_round_s = wall / timed
    solver_s = per_round_s * rounds
    print(
        f"NumPy solver: {per_round_s:.2f} s per round of n={n} "
        f"({per_round / per_round_s / 1e9:.1f} G int8 ops/s); "
        f"the whole challenge: {solver_s:,.0f} s = {solver_s / 3600:.1f} h "
        f"(extrapolated from {timed} round{'s' if timed > 1 else ''})"
    )
    # Sanity: the portal agrees with what the solver computed.
    check = proof.recompute(seed, n, [(0, 5)])[(0, 5)]
    leaf = bytes.fromhex(solution.reveal(0, 5)["leaf"])
    assert leaf[5 * 8 : 6 * 8] == check, "the solver and the portal disagree"

    # The honest agent's host-side cost: the Merkle tree over every leaf of the challenge.
    leaves = rounds * n // proof.LEAF_ROWS
    digests = np.random.default_rng(1).integers(0, 2**63, size=(rounds, n), dtype=np.uint64)
    started = time.perf_counter()
    Solution.from_digests(digests, elapsed_s=0.0)
    tree_s = time.perf_counter() - started
    print(f"Merkle tree of the whole challenge ({leaves:,} leaves) on the host: {tree_s:.2f} s")

    print(f"ratio, NumPy solver / portal check: {solver_s / portal_cpu:,.0f}x")
    print(
        f"a CPU like this one misses the {deadline_s:.0f} s deadline by "
        f"{solver_s / deadline_s:,.0f}x; the portal spends {portal_cpu:.2f} s of CPU per "
        f"verification (4 a day per GPU at the default mean interval: "
        f"{4 * portal_cpu:.1f} s a day per GPU)"
    )
    print(f"peak RSS {peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
