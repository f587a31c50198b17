"""The committed contract artifact is what the sources compile to (npm solc, contracts/build)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rewards import chain

CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"


def test_the_artifact_holds_the_contracts():
    contracts = chain.artifacts()
    assert set(contracts) == {
        "RewardDistributor", "TestToken", "TestContractWallet", "AggregatorV3Interface",
        "TestPriceFeed",
    }  # fmt: skip
    names = {item.get("name") for item in chain.abi()}
    assert {"claim", "claimed", "setSigner", "pause", "unpause", "Claimed", "signer"} <= names
    assert len(contracts["RewardDistributor"]["bytecode"]) > 1000


def test_the_committed_artifact_matches_a_fresh_compile():
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js here: cannot recompile the contracts")
    if not (CONTRACTS / "node_modules" / "solc").is_dir():
        pytest.skip("contracts/node_modules missing: run `npm ci` in contracts/ to recompile")
    fresh = subprocess.run(
        [node, "build.js", "--stdout"], cwd=CONTRACTS, capture_output=True, text=True, timeout=300
    )
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout) == json.loads((CONTRACTS / "artifacts.json").read_text()), (
        "contracts/artifacts.json is stale: run contracts/build and commit the result"
    )
