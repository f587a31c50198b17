"""For random seeds, the agent's NumPy solver and the portal's recomputation agree on every
checked row, and a single value off in a checked row is caught: its digest differs, so the
portal's check fails it as `wrong_row`, whatever root the agent committed."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from omnitensor_agent.proof import Solution, make_backend, solve
from omnitensor_agent.proof import spec as agent_spec

from contributors.verification import proof

SHAPES = st.sampled_from([(64, 1), (64, 3), (128, 2), (192, 1)])


@given(seed=st.binary(min_size=32, max_size=32), shape=SHAPES, data=st.data())
def test_the_numpy_solver_and_the_portal_agree_on_checked_rows(seed, shape, data):
    n, rounds = shape
    solution = solve(make_backend("numpy"), seed, n, rounds)
    pairs = data.draw(
        st.lists(
            st.tuples(st.integers(0, rounds - 1), st.integers(0, n - 1)),
            min_size=1,
            max_size=6,
            unique=True,
        )
    )
    expected = proof.recompute(seed, n, pairs)
    leaves = n // proof.LEAF_ROWS
    for r, i in pairs:
        item = solution.reveal(r, i)
        leaf = bytes.fromhex(item["leaf"])
        at = (i % proof.LEAF_ROWS) * proof.DIGEST_BYTES
        assert leaf[at : at + proof.DIGEST_BYTES] == expected[(r, i)]
        node = proof.leaf_hash(r, i // proof.LEAF_ROWS, leaf)
        path = [bytes.fromhex(h) for h in item["path"]]
        assert proof.root_from_path(node, r * leaves + i // proof.LEAF_ROWS, rounds * leaves,
                                    path) == solution.root  # fmt: skip


@given(
    seed=st.binary(min_size=32, max_size=32),
    shape=SHAPES,
    data=st.data(),
)
def test_one_value_off_in_a_checked_row_fails(seed, shape, data):
    """The agent got one element of one row wrong (by any non-zero amount) and committed a
    tree consistent with it: the leaf's digest is not the portal's, so the row fails."""
    n, rounds = shape
    r = data.draw(st.integers(0, rounds - 1))
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(0, n - 1))
    delta = data.draw(st.integers(-(2**20), 2**20).filter(bool))

    a_row = agent_spec.matrix_rows(agent_spec.key(seed, agent_spec.round_label(r)), n, i, 1)
    b = agent_spec.matrix_rows(agent_spec.key(seed, b"B"), n, 0, n)
    row = a_row.astype(np.int64) @ b.astype(np.int64)
    s, w = agent_spec.digest_vectors(seed, n)
    honest_digest = agent_spec.row_digests(row, s, w)[0]
    row[0, j] += delta
    wrong_digest = agent_spec.row_digests(row, s, w)[0]

    digests = solve(make_backend("numpy"), seed, n, rounds).digests.copy()
    assert digests[r, i] == honest_digest
    digests[r, i] = wrong_digest
    forged = Solution.from_digests(digests, elapsed_s=0.0)
    item = forged.reveal(r, i)
    leaf = bytes.fromhex(item["leaf"])
    at = (i % proof.LEAF_ROWS) * proof.DIGEST_BYTES
    # Consistent with its own root (the path is fine)...
    leaves = n // proof.LEAF_ROWS
    node = proof.leaf_hash(r, i // proof.LEAF_ROWS, leaf)
    index = r * leaves + i // proof.LEAF_ROWS
    path = [bytes.fromhex(h) for h in item["path"]]
    assert proof.root_from_path(node, index, rounds * leaves, path) == forged.root
    # ...but not the product: the portal's recomputation disagrees.
    assert leaf[at : at + proof.DIGEST_BYTES] != proof.recompute(seed, n, [(r, i)])[(r, i)]
