"""The proof arithmetic against agent/proof-vectors.json (made by the portal's code).

Every backend must give the same bits: NumPy, PyTorch (run on the CPU here, through the same
int64 generation and digest code that runs on CUDA) and the CuPy code with NumPy standing in
for CuPy.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from omnitensor_agent.proof import Solution, make_backend, solve, spec
from omnitensor_agent.proof.backends import CupyBackend, NumpyBackend, block_rows

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "proof-vectors.json").read_text())
CASES = VECTORS["cases"]
IDS = [f"n{c['n']}-r{c['rounds']}" for c in CASES]


def _hex_words(values):
    return [f"{int(x):016x}" for x in values]


@pytest.fixture(params=CASES, ids=IDS)
def case(request):
    return request.param


def test_keys_words_matrices_and_digest_vectors(case):
    seed, n = bytes.fromhex(case["seed"]), case["n"]
    key_b, key_d = spec.key(seed, b"B"), spec.key(seed, b"D")
    assert f"{key_b:016x}" == case["key_b"] and f"{key_d:016x}" == case["key_d"]
    assert _hex_words(spec.words(key_b, 0, 4)) == case["words_b_first_4"]
    assert spec.matrix_rows(key_b, n, 0, 1)[0].tolist() == case["b_row_0"]
    s, w = spec.digest_vectors(seed, n)
    assert s[:4].tolist() == case["s_first_4"] and w[:4].tolist() == case["w_first_4"]
    b = spec.matrix_rows(key_b, n, 0, n).astype(np.int64)
    for detail in case["rounds_detail"]:
        key_a = spec.key(seed, spec.round_label(detail["round"]))
        assert f"{key_a:016x}" == detail["key_a"]
        assert spec.matrix_rows(key_a, n, 1, 1)[0].tolist() == detail["a_row_1"]
        c = spec.matrix_rows(key_a, n, 0, n).astype(np.int64) @ b
        assert c[1].tolist() == detail["c_row_1"]
        digests = spec.row_digests(c, s, w)
        assert [int(d).to_bytes(8, "little").hex() for d in digests] == detail["digests"]


def test_words_at_an_offset_continue_the_stream():
    everything = spec.words(12345, 0, 100)
    assert np.array_equal(spec.words(12345, 37, 20), everything[37:57])


def _backends():
    yield pytest.param(NumpyBackend(), id="numpy")
    yield pytest.param(CupyBackend(xp=np), id="cupy-code-on-numpy")
    try:
        import torch  # noqa: F401
    except ImportError:
        reason = "PyTorch is not installed (pip install torch==2.13.0 runs this on the CPU)"
        yield pytest.param(None, id="torch-cpu", marks=pytest.mark.skip(reason=reason))
        yield pytest.param(None, id="torch-cpu-float64", marks=pytest.mark.skip(reason=reason))
        return
    from omnitensor_agent.proof.backends import TorchBackend

    yield pytest.param(TorchBackend(cpu=True), id="torch-cpu")
    # The fallback product (float64) where torch._int_mm is missing or wrong.
    yield pytest.param(TorchBackend(cpu=True, int_mm=False), id="torch-cpu-float64")


@pytest.mark.parametrize("backend", list(_backends()))
def test_backend_reproduces_every_digest_leaf_root_and_path(backend, case):
    seed, n, rounds = bytes.fromhex(case["seed"]), case["n"], case["rounds"]
    solution = solve(backend, seed, n, rounds)
    for detail in case["rounds_detail"]:
        got = solution.digests[detail["round"]]
        assert [int(d).to_bytes(8, "little").hex() for d in got] == detail["digests"]
    assert [h.hex() for h in solution.levels[0]] == case["leaf_hashes"]
    assert solution.root.hex() == case["root"]
    for proof in case["proofs"]:
        row = proof["leaf"] * 64 + 17
        entry = solution.reveal(proof["round"], row)
        assert entry["leaf"] == proof["leaf_bytes"]
        assert entry["path"] == proof["path"]
        assert solution.leaf_index(proof["round"], row) == proof["leaf_index"]


def test_torch_backend_used_its_int8_gemm_on_the_cpu():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    if not hasattr(torch, "_int_mm"):
        pytest.skip("this PyTorch has no torch._int_mm")
    from omnitensor_agent.proof.backends import TorchBackend

    backend = TorchBackend(cpu=True)
    case = CASES[0]
    assert solve(backend, bytes.fromhex(case["seed"]), case["n"], 1).root.hex() == case["root"]
    assert backend._fast == {"cpu": True}


def test_row_blocks_give_the_same_answer(monkeypatch):
    """Many small blocks of rows (as on a device with big n) change nothing."""
    case = CASES[2]
    seed = bytes.fromhex(case["seed"])
    monkeypatch.setattr("omnitensor_agent.proof.backends.NUMPY_BLOCK_BYTES", 64 * 8 * 192)
    monkeypatch.setattr("omnitensor_agent.proof.backends.NUMPY_WHOLE_B_BYTES", 0)
    monkeypatch.setattr("omnitensor_agent.proof.backends.BLOCK_BYTES", 64 * 8 * 192)
    assert block_rows(192, 64 * 8 * 192) == 64
    assert solve(NumpyBackend(), seed, 192, 2).root.hex() == case["root"]
    assert solve(CupyBackend(xp=np), seed, 192, 2).root.hex() == case["root"]


def test_merkle_paths_verify_and_a_flipped_byte_fails(case):
    solution = solve(NumpyBackend(), bytes.fromhex(case["seed"]), case["n"], case["rounds"])
    count = solution.leaf_count
    for round_ in range(solution.rounds):
        for row in range(0, solution.n, 64):
            entry = solution.reveal(round_, row)
            leaf, path = bytes.fromhex(entry["leaf"]), [bytes.fromhex(h) for h in entry["path"]]
            index = solution.leaf_index(round_, row)
            node = spec.leaf_hash(round_, row // 64, leaf)
            assert spec.root_from_path(node, index, count, path) == solution.root
            flipped = bytearray(leaf)
            flipped[row % 512] ^= 0x01
            bad = spec.leaf_hash(round_, row // 64, bytes(flipped))
            assert spec.root_from_path(bad, index, count, path) != solution.root
            if path:
                wrong_sibling = [bytes([path[0][0] ^ 0x80]) + path[0][1:], *path[1:]]
                assert spec.root_from_path(node, index, count, wrong_sibling) != solution.root
                assert spec.root_from_path(node, index, count, path[:-1]) is None


def test_odd_nodes_are_carried_up_not_duplicated():
    leaves = [bytes([i]) * 32 for i in range(5)]
    levels = spec.merkle_levels(leaves)
    assert [len(level) for level in levels] == [5, 3, 2, 1]
    assert levels[1][2] == leaves[4]  # carried up unchanged
    assert spec.merkle_path(levels, 4) == [levels[2][0]]  # one sibling: the rest carried
    for index, leaf in enumerate(leaves):
        path = spec.merkle_path(levels, index)
        assert spec.root_from_path(leaf, index, 5, path) == levels[-1][0]


def test_solution_refuses_rows_outside_the_challenge():
    solution = Solution.from_digests(np.zeros((2, 64), dtype=np.uint64), 0.0)
    with pytest.raises(IndexError):
        solution.reveal(2, 0)
    with pytest.raises(IndexError):
        solution.reveal(0, 64)


@pytest.mark.parametrize("n, rounds", [(0, 1), (100, 1), (16384 + 64, 1), (64, 0)])
def test_bad_shapes_are_refused(n, rounds):
    with pytest.raises(ValueError):
        solve(NumpyBackend(), bytes(32), n, rounds)


def test_auto_backend_without_cuda_is_numpy():
    try:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    except ImportError:
        pass
    assert make_backend("auto").name in ("numpy", "cupy")
