"""Balances and claims: what a contributor may claim, issuing vouchers, reporting transactions.

DESIGN.md "Balance": per account (chain, distributor, wallet), `confirmed` is what the
distributor paid it (the highest cumulative of its confirmed Claimed events) and `vouchered` the
highest cumulative of its unexpired vouchers (at least `confirmed`); `claimed` = Σ confirmed,
`pending` = Σ (vouchered − confirmed), `claimable` = earned − claimed − pending. A new voucher for
a wallet carries cumulative = its vouchered + claimable.

Why this never pays more than was earned: a voucher's cumulative is what the account may have
received in total, and the contract pays only up to it; vouchers are issued one at a time per
contributor (a row lock on the contributor, and IMMEDIATE transactions on SQLite), each from a
balance that already counts every earlier unexpired voucher as pending; and a voucher stops
counting only once the watcher has read every confirmed block up to one past its deadline,
so a voucher that is no longer counted can never be redeemed again.
"""

import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from contributors.models import Contributor
from portal.lib.errors import Refused
from rewards import chain
from rewards.ledger import earned_wei
from rewards.models import Claim, ClaimEvent
from rewards.vouchers import Voucher

UNEXPIRED = (Claim.Status.ISSUED, Claim.Status.SUBMITTED, Claim.Status.CONFIRMED)


@dataclass
class AccountBalance:
    confirmed: int = 0
    vouchered: int = 0


@dataclass
class Balance:
    earned: int
    accounts: dict = field(
        default_factory=dict
    )  # (chain_id, distributor, account) → AccountBalance

    @property
    def claimed(self) -> int:
        return sum(a.confirmed for a in self.accounts.values())

    @property
    def pending(self) -> int:
        return sum(a.vouchered - a.confirmed for a in self.accounts.values())

    @property
    def claimable(self) -> int:
        return self.earned - self.claimed - self.pending

    def account(self, chain_id: int, distributor: str, account: str) -> AccountBalance:
        return self.accounts.get((chain_id, distributor, account), AccountBalance())

    def as_json(self) -> dict:
        return {
            "earned_wei": str(self.earned),
            "claimed_wei": str(self.claimed),
            "pending_wei": str(self.pending),
            "claimable_wei": str(self.claimable),
        }


def confirmed_total(chain_id: int, distributor: str, account: str) -> int:
    """What the distributor has paid `account`, as far as the watcher has confirmed."""
    events = ClaimEvent.objects.filter(chain_id=chain_id, distributor=distributor, account=account)
    # Amounts are compared in Python: on SQLite a WeiField is text (rewards.wei).
    return max(events.values_list("cumulative_wei", flat=True), default=0)


def balance_of(contributor) -> Balance:
    """The contributor's balance, exactly, from the ledger, their vouchers and Claimed events."""
    balance = Balance(earned=earned_wei(contributor))
    rows = Claim.objects.filter(contributor=contributor).values_list(
        "chain_id", "distributor", "account", "status", "cumulative_wei"
    )
    for chain_id, distributor, account, status, cumulative in rows:
        key = (chain_id, distributor, account)
        if key not in balance.accounts:
            confirmed = confirmed_total(*key)
            balance.accounts[key] = AccountBalance(confirmed=confirmed, vouchered=confirmed)
        if status in UNEXPIRED:
            entry = balance.accounts[key]
            entry.vouchered = max(entry.vouchered, cumulative)
    return balance


def _refuse_foreign_account(contributor, cfg, account: str) -> None:
    # The contract keeps one running total per account; sharing it between two contributors'
    # ledgers would let one's claims eat into the other's.
    foreign = Claim.objects.filter(chain_id=cfg.chain_id, distributor=cfg.distributor)
    if foreign.filter(account=account).exclude(contributor=contributor).exists():
        raise Refused(
            409,
            "wallet_claimed_by_another_account",
            "This payout wallet already holds claims of another contributor; choose another.",
        )


def issue(contributor, now: float | None = None, at_most_wei: int | None = None) -> Claim:
    """Sign a voucher for everything the contributor may claim (or at most `at_most_wei` of
    it: less than claimable is always safe), to their payout wallet.

    Refused: 503 chain_not_configured, 409 no_payout_wallet, 409 nothing_to_claim. With nothing
    new to claim, a wallet whose every open voucher is past its deadline (not yet expired by the
    watcher) gets the same total again with a fresh deadline: safe, because the contract pays an
    account at most the highest cumulative it ever sees.
    """
    cfg = chain.config()
    now = int(time.time() if now is None else now)
    with transaction.atomic():
        # One voucher at a time per contributor: the second waits here and sees the first.
        Contributor.objects.select_for_update().filter(pk=contributor.pk).first()
        wallet = contributor.wallets.filter(is_payout=True).first()
        if wallet is None:
            raise Refused(409, "no_payout_wallet", "Choose a payout wallet first.")
        account = wallet.address
        _refuse_foreign_account(contributor, cfg, account)
        balance = balance_of(contributor)
        own = balance.account(cfg.chain_id, cfg.distributor, account)
        claimable = balance.claimable
        if at_most_wei is not None:
            claimable = min(claimable, max(0, at_most_wei))
        if claimable <= 0:
            open_claims = Claim.objects.filter(
                contributor=contributor,
                chain_id=cfg.chain_id,
                distributor=cfg.distributor,
                account=account,
                status__in=(Claim.Status.ISSUED, Claim.Status.SUBMITTED),
            )
            stale = (
                own.vouchered > own.confirmed and not open_claims.filter(deadline__gte=now).exists()
            )
            if not stale:
                raise Refused(409, "nothing_to_claim", "Nothing is claimable right now.")
            claimable = 0
        voucher = Voucher(
            chain_id=cfg.chain_id,
            distributor=cfg.distributor,
            account=account,
            cumulative_wei=own.vouchered + claimable,
            deadline=now + settings.CLAIM_VOUCHER_TTL_S,
        )
        return Claim.objects.create(
            contributor=contributor,
            chain_id=voucher.chain_id,
            distributor=voucher.distributor,
            account=voucher.account,
            cumulative_wei=voucher.cumulative_wei,
            amount_wei=voucher.cumulative_wei - own.vouchered,
            deadline=voucher.deadline,
            signature=voucher.sign(cfg.signer_key),
        )


def report_transaction(contributor, claim_id: int, tx_hash: str) -> Claim:
    """The page sent the voucher in transaction `tx_hash`: issued → submitted.

    Reporting again (the same hash, or a replacement after a speed-up) is fine while the claim
    is open; the watcher decides from the chain, never from this hash.
    """
    claim = Claim.objects.filter(pk=claim_id, contributor=contributor).first()
    if claim is None:
        raise Refused(404, "claim_not_found", "No such claim of yours.")
    updated = Claim.objects.filter(
        pk=claim.pk, status__in=(Claim.Status.ISSUED, Claim.Status.SUBMITTED)
    ).update(status=Claim.Status.SUBMITTED, tx_hash=tx_hash, submitted_at=timezone.now())
    claim.refresh_from_db()
    if not updated and not (claim.status == Claim.Status.CONFIRMED and claim.tx_hash == tx_hash):
        raise Refused(409, f"claim_{claim.status}", f"This claim is {claim.status} already.")
    return claim
