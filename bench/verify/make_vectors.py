"""Write agent/proof-vectors.json: the protocol's test vectors (agent/PROOF.md).

    python bench/verify/make_vectors.py

Every value comes from the portal's implementation (`contributors.verification.proof`) and is
checked, before it is written, against a pure-Python transcription of PROOF.md (integers only,
no NumPy): the generator's words, matrix rows and one row digest per round.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from contributors.verification import proof  # noqa: E402

MASK = (1 << 64) - 1
CASES = [
    ("6f6d6e6974656e736f722070726f6f66206f66204750552076312074657374" + "21", 64, 1),
    ("00" * 32, 128, 3),
    (hashlib.sha256(b"omnitensor proof vectors").hexdigest(), 192, 2),
]


def pure_word(key: int, j: int) -> int:
    z = (key + (j + 1) * proof.GAMMA) & MASK
    z = ((z ^ (z >> 30)) * proof.MIX_1) & MASK
    z = ((z ^ (z >> 27)) * proof.MIX_2) & MASK
    return z ^ (z >> 31)


def pure_row(key: int, n: int, i: int) -> list[int]:
    out = []
    for k in range(i * n, (i + 1) * n):
        byte = (pure_word(key, k // 8) >> (8 * (k % 8))) & 0xFF
        out.append(byte - 256 if byte > 127 else byte)
    return out


def signed(x: int) -> int:
    return x - (1 << 64) if x >> 63 else x


def pure_digest(key_d: int, n: int, row: list[int]) -> int:
    s = [signed(pure_word(key_d, j)) for j in range(n)]
    w = [signed(pure_word(key_d, n + j)) for j in range(n)]
    return sum(w[j] * (row[j] + s[j]) ** 2 for j in range(n)) % (1 << 64)


def case(seed_hex: str, n: int, rounds: int) -> dict:
    seed = bytes.fromhex(seed_hex)
    key_b, key_d = proof.key(seed, b"B"), proof.key(seed, b"D")
    b = proof.matrix_rows(key_b, n, 0, n).astype(np.int64)
    s, w = proof.digest_vectors(seed, n)
    assert pure_row(key_b, n, 0) == b[0].tolist() and pure_row(key_b, n, n - 1) == b[-1].tolist()
    leaves, leaf_bytes, detail = [], [], []
    for r in range(rounds):
        key_a = proof.key(seed, proof.round_label(r))
        a = proof.matrix_rows(key_a, n, 0, n).astype(np.int64)
        assert pure_row(key_a, n, 1) == a[1].tolist()
        c = a @ b
        digests = proof.row_digests(c, s, w)
        assert int(digests[1]) == pure_digest(key_d, n, c[1].tolist())
        for leaf in range(n // proof.LEAF_ROWS):
            rows = digests[proof.LEAF_ROWS * leaf : proof.LEAF_ROWS * (leaf + 1)]
            data = rows.astype("<u8").tobytes()
            leaves.append(proof.leaf_hash(r, leaf, data))
            leaf_bytes.append(data)
        detail.append(
            {
                "round": r,
                "key_a": f"{key_a:016x}",
                "a_row_1": a[1].tolist(),
                "c_row_1": c[1].tolist(),
                "digests": [int(x).to_bytes(8, "little").hex() for x in digests],
            }
        )
    levels = proof.merkle_levels(leaves)
    per_round = n // proof.LEAF_ROWS
    proofs = [
        {
            "leaf_index": g,
            "round": g // per_round,
            "leaf": g % per_round,
            "leaf_bytes": leaf_bytes[g].hex(),
            "leaf_hash": leaves[g].hex(),
            "path": [h.hex() for h in proof.merkle_path(levels, g)],
        }
        for g in sorted({0, len(leaves) - 1, len(leaves) // 2})
    ]
    return {
        "seed": seed_hex,
        "n": n,
        "rounds": rounds,
        "key_b": f"{key_b:016x}",
        "key_d": f"{key_d:016x}",
        "words_b_first_4": [f"{int(x):016x}" for x in proof.words(key_b, 0, 4)],
        "b_row_0": b[0].tolist(),
        "s_first_4": s[:4].tolist(),
        "w_first_4": w[:4].tolist(),
        "rounds_detail": detail,
        "leaf_hashes": [h.hex() for h in leaves],
        "root": levels[-1][0].hex(),
        "proofs": proofs,
    }


def main() -> None:
    vectors = {
        "about": "Test vectors for agent/PROOF.md (protocol v1). Keys and words are hex of the "
        "integer; digests are the 8 little-endian bytes in hex (row order); rows are int lists.",
        "cases": [case(*c) for c in CASES],
    }
    with open(ROOT / "agent" / "proof-vectors.json", "w") as out:
        json.dump(vectors, out, indent=1)
    print("roots:", [c["root"][:16] for c in vectors["cases"]])


if __name__ == "__main__":
    main()
