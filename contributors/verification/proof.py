"""The portal's side of the proof-of-GPU arithmetic (agent/PROOF.md, sections 2 and 5).

The agent computes every row of every product; the portal recomputes only the few rows it
asked to see. A row of `C_r = A_r @ B` is one row of `A_r` times all of `B`: `B` is made once
per check, in slices of rows so a worker never holds more than `SLICE_BYTES` of float64 at a
time, and the product runs in float64 BLAS, which is exact here (every partial sum is an
integer below 2^53) and a hundred times faster than NumPy's integer matmul.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

GAMMA = 0x9E3779B97F4A7C15
MIX_1 = 0xBF58476D1CE4E5B9
MIX_2 = 0x94D049BB133111EB
LEAF_ROWS = 64
DIGEST_BYTES = 8
LEAF_BYTES = LEAF_ROWS * DIGEST_BYTES
MAX_N = 16384
SLICE_BYTES = 64 * 1024 * 1024

_U64 = np.uint64


def key(seed: bytes, label: bytes) -> int:
    return int.from_bytes(hashlib.sha256(seed + label).digest()[:8], "little")


def round_label(round_: int) -> bytes:
    return b"A" + round_.to_bytes(4, "big")


def words(key_: int, start: int, count: int) -> np.ndarray:
    """SplitMix64 words `start … start+count-1` of a key, as uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (np.arange(start + 1, start + count + 1, dtype=_U64) * _U64(GAMMA)) + _U64(key_)
        z = (z ^ (z >> _U64(30))) * _U64(MIX_1)
        z = (z ^ (z >> _U64(27))) * _U64(MIX_2)
        return z ^ (z >> _U64(31))


def matrix_rows(key_: int, n: int, first: int, count: int) -> np.ndarray:
    """Rows `first … first+count-1` of the n×n int8 matrix of a key."""
    per_row = n // 8
    return (
        words(key_, first * per_row, count * per_row).astype("<u8").view(np.int8).reshape(count, n)
    )


def digest_vectors(seed: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(s, w) of the row digest, as int64."""
    both = words(key(seed, b"D"), 0, 2 * n).view(np.int64)
    return both[:n], both[n:]


def row_digests(rows: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ_j w_j (c_j + s_j)² mod 2^64 per row, as uint64."""
    with np.errstate(over="ignore"):
        v = rows.astype(np.int64) + s
        return (v * v * w).sum(axis=1, dtype=np.int64).view(_U64)


def recompute(seed: bytes, n: int, wanted: Iterable[tuple[int, int]]) -> dict:
    """(round, row) → the digest (8 bytes) the honest GPU computed for that row."""
    wanted = sorted(set(wanted))
    if not wanted:
        return {}
    lhs = np.stack([matrix_rows(key(seed, round_label(r)), n, i, 1)[0] for r, i in wanted]).astype(
        np.float64
    )
    product = np.zeros((len(wanted), n), dtype=np.float64)
    slice_rows = max(1, SLICE_BYTES // (8 * n))
    b_key = key(seed, b"B")
    for first in range(0, n, slice_rows):
        count = min(slice_rows, n - first)
        b_slice = matrix_rows(b_key, n, first, count).astype(np.float64)
        product += lhs[:, first : first + count] @ b_slice
    s, w = digest_vectors(seed, n)
    digests = row_digests(product.astype(np.int64), s, w)
    return {
        pair: int(d).to_bytes(DIGEST_BYTES, "little")
        for pair, d in zip(wanted, digests, strict=True)
    }


# --- the Merkle tree -----------------------------------------------------------------------


def leaf_hash(round_: int, leaf: int, leaf_bytes: bytes) -> bytes:
    return hashlib.sha256(
        b"\x00" + round_.to_bytes(4, "big") + leaf.to_bytes(4, "big") + leaf_bytes
    ).digest()


def parent(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(node: bytes, index: int, count: int, path: Sequence[bytes]) -> bytes | None:
    """The root that `node` (leaf `index` of `count`) and its path lead to; None when the
    path has the wrong length for that position."""
    siblings = iter(path)
    while count > 1:
        if index % 2 == 1 or index + 1 < count:
            sibling = next(siblings, None)
            if not isinstance(sibling, bytes):
                return None
            node = parent(sibling, node) if index % 2 == 1 else parent(node, sibling)
        index, count = index // 2, (count + 1) // 2
    return node if next(siblings, None) is None else None


def merkle_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, root last (for test vectors and simulators)."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [parent(below[k], below[k + 1]) for k in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        levels.append(above)
    return levels


def merkle_path(levels: list[list[bytes]], index: int) -> list[bytes]:
    path = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path
