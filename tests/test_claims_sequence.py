"""Random sequences of earning, claiming, replaying, expiring, wallet switches and watching, on a
real EVM: the chain never pays more than was earned, each wallet holds exactly what the portal's
ledger says it was paid, and at the end everything earned can be claimed, to the wei.

Scripted with a seeded random generator (deterministic, one test per seed) rather than
hypothesis, because every example needs its own chain and database state.
"""

import contextlib
import random

import pytest

from contributors.signin import contributor_for_sign_in, link_wallet
from rewards.claims import balance_of
from rewards.models import Claim
from tests.support.claims import REVERTS, credit, post_claim, report_tx, start_evm
from tests.support.siwe import ALICE, BOB, signed_in

pytestmark = pytest.mark.django_db

WALLETS = (ALICE.address, BOB.address)


@pytest.fixture
def evm(settings, monkeypatch):
    return start_evm(settings, monkeypatch)


def check_invariants(evm, contributor, earned: int) -> None:
    paid = sum(evm.balance(w) for w in WALLETS)
    assert paid == sum(evm.claimed(w) for w in WALLETS)
    assert paid <= earned, "the chain paid more than was earned"
    balance = balance_of(contributor)
    assert balance.earned == earned
    assert balance.claimed <= paid
    assert balance.claimable >= 0
    assert balance.claimed + balance.pending <= earned
    # Whatever the chain may still pay out (open vouchers) stays within what was earned.
    may_pay = paid + sum(
        max(0, max((c.cumulative_wei for c in Claim.objects.filter(account=w)
                    if c.is_open), default=0) - evm.claimed(w))
        for w in WALLETS
    )  # fmt: skip
    assert may_pay <= earned


@pytest.mark.parametrize("seed", range(6))
def test_any_sequence_pays_exactly_what_the_ledger_says(evm, settings, seed):
    rng = random.Random(seed)
    alice = contributor_for_sign_in(ALICE.address)
    link_wallet(alice, BOB.address)
    client = signed_in(alice)
    earned = 0
    vouchers = []
    for _ in range(30):
        action = rng.choice(["earn", "claim", "claim", "send", "send", "replay", "expire",
                             "switch", "watch", "report"])  # fmt: skip
        if action == "earn":
            amount = rng.randint(1, 10**6) * 10**12
            credit(alice, amount)
            earned += amount
        elif action == "claim":
            settings.CLAIM_VOUCHER_TTL_S = rng.choice([60, 3600])
            for _attempt in range(rng.choice([1, 2])):  # a retried click
                response = post_claim(client)
                assert response.status_code in (201, 409), response.content
                if response.status_code == 201:
                    vouchers.append(response.json())
        elif action in ("send", "replay") and vouchers:
            voucher = vouchers[-1] if action == "send" else rng.choice(vouchers)
            # Replayed, superseded or expired: the contract refuses and pays nothing.
            with contextlib.suppress(REVERTS):
                evm.send(voucher["tx"])
        elif action == "expire":
            short = [v["deadline"] for v in vouchers if v["deadline"] >= evm.now()]
            if short:
                evm.travel_to(min(short) + 1)
                evm.mine(1)
        elif action == "switch":
            other = BOB.address if alice.payout_wallet.address == ALICE.address else ALICE.address
            alice.wallets.get(address=other).make_payout()
        elif action == "report" and vouchers:
            report_tx(client, rng.choice(vouchers)["claim_id"], "0x" + "ee" * 32)
        elif action == "watch":
            evm.mine()
            evm.watch()
        check_invariants(evm, alice, earned)

    # Settle everything: let every voucher expire or confirm, then claim the rest.
    evm.travel_to(max([v["deadline"] for v in vouchers], default=evm.now()) + 1)
    evm.mine(1)  # a block past every deadline...
    evm.mine()  # ...with enough confirmations on top
    evm.watch()
    assert not [c for c in Claim.objects.all() if c.is_open]
    settings.CLAIM_VOUCHER_TTL_S = 30 * 24 * 3600
    response = post_claim(client)
    if response.status_code == 201:
        evm.send(response.json()["tx"])
        evm.mine()
        evm.watch()
    else:
        assert response.json()["error"] == "nothing_to_claim"
    check_invariants(evm, alice, earned)
    balance = balance_of(alice)
    assert sum(evm.balance(w) for w in WALLETS) == earned
    assert (balance.claimed, balance.pending, balance.claimable) == (earned, 0, 0)
    for wallet in WALLETS:
        confirmed = sum(
            c.amount_wei for c in Claim.objects.filter(account=wallet, status="confirmed")
        )
        assert evm.balance(wallet) == evm.claimed(wallet)
        assert confirmed <= evm.balance(wallet)
