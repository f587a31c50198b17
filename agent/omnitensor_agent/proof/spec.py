"""The arithmetic of the challenge protocol (PROOF.md, section 2), written for the agent.

Keys and the Merkle tree are plain ``hashlib``; words, matrices and digests are NumPy uint64
with wrap-around (the reference that the device backends must match bit for bit). The device
backends redo the same arithmetic on signed int64 (see ``backends``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

GAMMA = 0x9E3779B97F4A7C15
MIX_1 = 0xBF58476D1CE4E5B9
MIX_2 = 0x94D049BB133111EB
LEAF_ROWS = 64
DIGEST_BYTES = 8
LEAF_BYTES = LEAF_ROWS * DIGEST_BYTES
MIN_N, MAX_N = 64, 16384

_U64 = np.uint64


def signed64(x: int) -> int:
    """An unsigned 64-bit value as the signed int64 with the same bits."""
    return x - (1 << 64) if x >> 63 else x


def key(seed: bytes, label: bytes) -> int:
    return int.from_bytes(hashlib.sha256(seed + label).digest()[:8], "little")


def round_label(round_: int) -> bytes:
    return b"A" + round_.to_bytes(4, "big")


def words(key_: int, start: int, count: int) -> np.ndarray:
    """SplitMix64 words ``start … start+count-1`` of a key, as uint64."""
    with np.errstate(over="ignore"):
        z = np.arange(start + 1, start + count + 1, dtype=_U64) * _U64(GAMMA) + _U64(key_)
        z = (z ^ (z >> _U64(30))) * _U64(MIX_1)
        z = (z ^ (z >> _U64(27))) * _U64(MIX_2)
        return z ^ (z >> _U64(31))


def matrix_rows(key_: int, n: int, first: int, count: int) -> np.ndarray:
    """Rows ``first … first+count-1`` of the nxn int8 matrix of a key."""
    per_row = n // 8
    raw = words(key_, first * per_row, count * per_row).astype("<u8")
    return raw.view(np.int8).reshape(count, n)


def digest_vectors(seed: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(s, w)`` of the row digest, as int64."""
    both = words(key(seed, b"D"), 0, 2 * n).view(np.int64)
    return both[:n], both[n:]


def row_digests(rows: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``Σ_j w_j (c_j + s_j)²`` mod 2^64 for each row, as uint64."""
    with np.errstate(over="ignore"):
        v = rows.astype(np.int64) + s
        return (v * v * w).sum(axis=1, dtype=np.int64).view(_U64)


def check_shape(n: int, rounds: int) -> None:
    if not (MIN_N <= n <= MAX_N and n % LEAF_ROWS == 0):
        raise ValueError(f"n must be a multiple of 64 from {MIN_N} to {MAX_N}, got {n}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")


# --- leaves and the Merkle tree ------------------------------------------------------------


def leaf_hash(round_: int, leaf: int, leaf_bytes: bytes) -> bytes:
    return hashlib.sha256(
        b"\x00" + round_.to_bytes(4, "big") + leaf.to_bytes(4, "big") + leaf_bytes
    ).digest()


def parent(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, root last; an odd last node is carried up."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [parent(below[k], below[k + 1]) for k in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        levels.append(above)
    return levels


def merkle_path(levels: Sequence[Sequence[bytes]], index: int) -> list[bytes]:
    """Sibling hashes bottom-up; levels where the node was carried up add nothing."""
    path = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path


def root_from_path(node: bytes, index: int, count: int, path: Sequence[bytes]) -> bytes | None:
    """The root that ``node`` (leaf ``index`` of ``count``) and its path lead to; None when
    the path has the wrong length for that position."""
    siblings = iter(path)
    while count > 1:
        if index % 2 == 1 or index + 1 < count:
            sibling = next(siblings, None)
            if not isinstance(sibling, bytes):
                return None
            node = parent(sibling, node) if index % 2 == 1 else parent(node, sibling)
        index, count = index // 2, (count + 1) // 2
    return node if next(siblings, None) is None else None
