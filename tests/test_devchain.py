"""The demo's local chain (`manage.py devchain`) as `make run` starts it: a real process serving
JSON-RPC on 127.0.0.1, with the token and the distributor at the addresses `--print-env` gives
(what the Makefile exports), a relayed claim sent through it, and the watcher confirming it."""

import os
import subprocess
import sys

import pytest
from web3 import Web3

from contributors.signin import contributor_for_sign_in
from rewards import chain, devchain, watcher
from rewards.models import ChainCursor, Claim, ClaimEvent
from tests.support.claims import balance, credit, post_claim, relay_claim
from tests.support.processes import (
    BASE_DIR,
    database_url_for_test_db,
    free_port,
    tail,
    wait_until,
)
from tests.support.rewards import OMNIT
from tests.support.siwe import ALICE, BOB, signed_in

pytestmark = pytest.mark.django_db(transaction=True)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def exported(port: int) -> dict[str, str]:
    """What `make run` exports: the `export NAME=value` lines of `devchain --print-env`."""
    done = manage("devchain", "--print-env", "--port", str(port), DEBUG="true")
    assert done.returncode == 0, done.stderr
    lines = [line.removeprefix("export ") for line in done.stdout.splitlines()]
    return dict(line.split("=", 1) for line in lines)


def test_it_refuses_to_run_without_debug():
    done = manage(
        "devchain", "--print-env",
        DEBUG="false", SECRET_KEY="a-production-grade-secret-key-0123456789-abcdefghijklmnop",
        ALLOWED_HOSTS="portal.example.org",
    )  # fmt: skip
    assert done.returncode != 0
    assert "DEBUG" in done.stderr


@pytest.fixture
def running_chain(tmp_path, settings):
    port = free_port()
    log_path = tmp_path / "devchain.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "devchain", "--port", str(port), "--block-time", "0.5"],
            cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "DEBUG": "true", "DATABASE_URL": database_url_for_test_db(),
                 "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 10}))

        def up():
            if proc.poll() is not None:
                pytest.fail(f"devchain exited:\n{tail(log_path)}")
            return "devchain: chain" in tail(log_path) and w3.is_connected()

        wait_until(up, 60, "the devchain never answered", log_path)
        yield port, w3, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def configure(settings, env: dict) -> None:
    settings.CHAIN_ID = int(env["CHAIN_ID"])
    settings.DISTRIBUTOR_ADDRESS = env["DISTRIBUTOR_ADDRESS"]
    settings.OMNIT_TOKEN_ADDRESS = env["OMNIT_TOKEN_ADDRESS"]
    settings.CLAIM_SIGNER_KEY = env["CLAIM_SIGNER_KEY"]
    settings.CLAIM_RELAYER_KEY = env["CLAIM_RELAYER_KEY"]
    settings.WEB3_PROVIDER_URI = env["WEB3_PROVIDER_URI"]
    settings.CHAIN_CONFIRMATIONS = int(env["CHAIN_CONFIRMATIONS"])
    settings.DISTRIBUTOR_DEPLOY_BLOCK = int(env["DISTRIBUTOR_DEPLOY_BLOCK"])


def test_the_devchain_serves_the_contracts_and_a_relayed_claim_is_confirmed(
    running_chain, settings
):
    port, w3, log_path = running_chain
    env = exported(port)
    assert env["WEB3_PROVIDER_URI"] == f"http://127.0.0.1:{port}"
    configure(settings, env)
    assert chain.provider_factory is chain.default_provider  # a plain HTTPProvider, no test hook

    assert w3.eth.chain_id == int(env["CHAIN_ID"]) == 31337
    token = w3.eth.contract(address=env["OMNIT_TOKEN_ADDRESS"], abi=chain.abi("TestToken"))
    distributor = chain.distributor_contract(w3, env["DISTRIBUTOR_ADDRESS"])
    assert distributor.functions.token().call() == token.address
    assert distributor.functions.signer().call() == devchain.SIGNER
    assert token.functions.balanceOf(distributor.address).call() == devchain.DISTRIBUTOR_FUNDS
    assert w3.eth.get_balance(devchain.RELAYER) > 0
    assert config_matches(env)

    alice = contributor_for_sign_in(ALICE.address)
    credit(alice, 7 * OMNIT)
    client = signed_in(alice)
    voucher = post_claim(client).json()
    response = relay_claim(client, voucher["claim_id"])
    assert response.status_code == 202, response.content
    assert w3.eth.get_transaction_receipt(response.json()["tx_hash"])["status"] == 1
    assert token.functions.balanceOf(ALICE.address).call() == 7 * OMNIT

    def confirmed():  # blocks come every 0.5 s; the watcher waits for 2 on top
        watcher.watch()
        return Claim.objects.get().status == Claim.Status.CONFIRMED

    wait_until(confirmed, 30, "the watcher never confirmed the relayed claim", log_path)
    assert balance(client)["claimed_wei"] == 7 * OMNIT
    assert Claim.objects.get().tx_hash == response.json()["tx_hash"]


def config_matches(env: dict) -> bool:
    from django.test import Client

    body = Client().get("/api/v1/claims/config").json()
    return (body["distributor"], body["token"], body["signer"]) == (
        env["DISTRIBUTOR_ADDRESS"], env["OMNIT_TOKEN_ADDRESS"], devchain.SIGNER
    )  # fmt: skip


def test_a_new_devchain_takes_over_the_portals_records_of_the_previous_one(tmp_path, settings):
    # What an earlier `make run` left: Bob was paid 3 OMNIT on the chain that is gone, a voucher
    # of Alice's was still open, and the watcher had read that chain to block 40.
    bob = contributor_for_sign_in(BOB.address)
    alice = contributor_for_sign_in(ALICE.address)
    where = {"chain_id": devchain.CHAIN_ID, "distributor": devchain.DISTRIBUTOR_ADDRESS}
    ClaimEvent.objects.create(
        **where, account=BOB.address, amount_wei=3 * OMNIT, cumulative_wei=3 * OMNIT,
        block_number=30, block_hash="0x" + "aa" * 32, tx_hash="0x" + "bb" * 32, log_index=0,
    )  # fmt: skip
    Claim.objects.create(
        **where, contributor=bob, account=BOB.address, cumulative_wei=3 * OMNIT,
        amount_wei=3 * OMNIT, deadline=1, signature="0x", status=Claim.Status.CONFIRMED,
    )  # fmt: skip
    Claim.objects.create(
        **where, contributor=alice, account=ALICE.address, cumulative_wei=OMNIT,
        amount_wei=OMNIT, deadline=2**40, signature="0x",
    )  # fmt: skip
    ChainCursor.objects.create(**where, block_number=40, block_hash="0x" + "cc" * 32)

    port = free_port()
    log_path = tmp_path / "devchain.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "devchain", "--port", str(port)],
            cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "DEBUG": "true", "DATABASE_URL": database_url_for_test_db(),
                 "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        wait_until(lambda: "devchain: chain" in tail(log_path), 60, "no devchain", log_path)
        configure(settings, exported(port))
        w3 = chain.web3()
        distributor = chain.distributor_contract(w3, devchain.DISTRIBUTOR_ADDRESS)
        assert distributor.functions.claimed(BOB.address).call() == 3 * OMNIT
        assert not ChainCursor.objects.exists()
        assert Claim.objects.get(account=ALICE.address).status == Claim.Status.EXPIRED
        watcher.watch(w3)  # reads the new chain from block 0: no "deep reorg"
        assert balance(signed_in(bob))["claimed_wei"] == 3 * OMNIT
    finally:
        proc.terminate()
        proc.wait(timeout=10)
