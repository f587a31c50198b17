"""Relayed (gasless) claims: the portal sends a contributor's voucher and pays the gas.

A contributor without gas, or without a browser wallet, asks the portal to send one of their
issued vouchers. The relayer account (CLAIM_RELAYER_KEY) signs `claim(account, cumulative,
deadline, signature)` locally and sends it raw; the contract pays `account`, the contributor's
payout wallet named in the voucher, whoever sends it. The claim then becomes `submitted` with the
transaction's hash exactly as when the page reports a transaction (rewards.claims), so the
watcher confirms it from the chain, or expires it after its deadline when the transaction was
dropped or reverted; its amount is claimable again then, and the contract's cumulative totals
mean nothing is paid twice.

Bounded: CLAIM_RELAY_PER_DAY relays per contributor per 24 hours (429 relay_limit), a gas-price
cap (503 gas_price_too_high), and a relayer that cannot pay the gas refuses (503
relayer_underfunded) instead of sending a transaction that would be stuck. Sending holds a row
lock on the relayer (rewards.models.Relayer), so two workers never use the same nonce; the nonce
is the node's pending count, bumped on "nonce too low".
"""

import logging
import sys
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from eth_account import Account
from eth_utils.exceptions import ValidationError as EthValidationError
from web3.exceptions import ContractCustomError, ContractLogicError, Web3Exception

from contributors.models import Contributor
from portal.lib.errors import Refused
from rewards import chain
from rewards.models import Claim, Relayer

log = logging.getLogger(__name__)

# The relayed transaction must be mined before the voucher's deadline; this leaves it time.
MIN_TIME_LEFT_S = 30
GAS_HEADROOM_PCT = 125
# Gas a claim needs at most (it takes about 70,000): the relayer must hold this much at the fee.
CLAIM_GAS_BOUND = 200_000
NONCE_RETRIES = 3


def _reverts() -> tuple:
    """The errors that mean "the contract refused". The in-process chain of the tests and the
    demo (eth-tester) raises its own; it counts only where eth-tester is loaded already, so a
    production process never imports py-evm (which also raises the recursion limit:
    `portal.lib.recursion`)."""
    errors = [ContractLogicError, ContractCustomError]
    tester = sys.modules.get("eth_tester.exceptions")
    if tester is not None:
        errors.append(tester.TransactionFailed)
    return tuple(errors)


def relayer_account():
    """The relayer's account, or Refused(503, "relay_not_configured")."""
    key = settings.CLAIM_RELAYER_KEY
    if not key:
        raise Refused(
            503, "relay_not_configured", "The portal cannot send claims: no CLAIM_RELAYER_KEY."
        )
    try:
        return Account.from_key(key)
    except (ValueError, TypeError):
        raise Refused(503, "relay_not_configured", "CLAIM_RELAYER_KEY is not a key.") from None


def available() -> bool:
    """Whether the portal offers to send claims (a relayer key and a node are configured)."""
    return bool(settings.CLAIM_RELAYER_KEY and settings.WEB3_PROVIDER_URI)


def _node():
    w3 = chain.web3()
    if w3 is None:
        raise Refused(503, "relay_not_configured", "The portal cannot send claims: no node.")
    return w3


def _unavailable(exc: Exception) -> Refused:
    log.warning("relay: the chain node did not answer: %s", exc)
    return Refused(503, "chain_unavailable", "The chain node did not answer; try again shortly.")


def status() -> dict | None:
    """The relayer's address, chain and balance (for /healthz staff details and the admin), or
    None when no relayer is configured."""
    try:
        relayer = relayer_account()
    except Refused:
        return None
    out = {"address": relayer.address, "chain_id": settings.CHAIN_ID, "balance_wei": None}
    try:
        w3 = _node()
        out["balance_wei"] = str(w3.eth.get_balance(relayer.address))
    except Refused as refusal:
        out["error"] = refusal.code
    except (OSError, Web3Exception, ValueError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def _check_relayable(claim: Claim, cfg, now: int) -> None:
    if claim.status != Claim.Status.ISSUED:
        raise Refused(
            409, f"claim_{claim.status}", f"This claim is {claim.status} already; not relayed."
        )
    if (claim.chain_id, claim.distributor) != (cfg.chain_id, cfg.distributor):
        raise Refused(409, "claim_not_relayable", "This voucher is for another distributor.")
    if claim.deadline < now + MIN_TIME_LEFT_S:
        raise Refused(
            409,
            "claim_past_deadline",
            "This voucher's deadline is too close to send it; claim again for a fresh one.",
        )


def _check_limit(contributor, now) -> None:
    since = now - timedelta(days=1)
    relayed = list(
        Claim.objects.filter(contributor=contributor, relayed_at__gte=since)
        .order_by("-relayed_at")
        .values_list("relayed_at", flat=True)[: max(settings.CLAIM_RELAY_PER_DAY, 1)]
    )
    if len(relayed) >= settings.CLAIM_RELAY_PER_DAY:
        refusal = Refused(
            429,
            "relay_limit",
            f"The portal sends at most {settings.CLAIM_RELAY_PER_DAY} claims of yours a day; "
            "send this one from your wallet, or try again later.",
        )
        # When the oldest relay that counts leaves the 24 hours (a day when none may be sent).
        frees_at = relayed[-1] + timedelta(days=1) if relayed else now + timedelta(days=1)
        refusal.extra["retry_after_s"] = max(1, int((frees_at - now).total_seconds()) + 1)
        raise refusal


def _fees(w3) -> tuple[int, int]:
    """(maxFeePerGas, maxPriorityFeePerGas) within the cap, or Refused(503)."""
    cap = settings.CLAIM_RELAY_MAX_GAS_PRICE_WEI
    base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
    try:
        tip = int(w3.eth.max_priority_fee)
    except (Web3Exception, ValueError):
        tip = 10**9
    if base_fee + tip > cap:
        raise Refused(
            503,
            "gas_price_too_high",
            f"Gas costs {base_fee + tip} wei now, above the portal's cap of {cap}; "
            "try again later or send the claim from your wallet.",
        )
    return min(cap, 2 * base_fee + tip), tip


def relay(contributor, claim_id: int, now: float | None = None) -> Claim:
    """Send the contributor's issued claim `claim_id` from the relayer; the claim, submitted.

    Fees, the relayer's balance and the gas the call needs are read from the node before any
    lock is taken; then, under row locks on the contributor, the claim and the relayer, the
    checks run again, the node's next nonce is taken, the transaction is signed and sent, and
    the claim is recorded as submitted with its hash. Only those two short node calls happen
    under the locks, and they keep one nonce per transaction.

    Refused: 404 claim_not_found; 409 claim_<status> (not issued), claim_not_relayable,
    claim_past_deadline, claim_would_revert, claim_too_costly; 429 relay_limit,
    relay_budget_spent; 503 relay_not_configured, chain_not_configured, chain_unavailable,
    gas_price_too_high, relayer_underfunded, relay_failed.
    """
    cfg = chain.config()
    clock = int(time.time() if now is None else now)
    # What the contributor asked about first: a claim that is not theirs is a 404 whatever
    # the portal's relaying can do.
    claim = Claim.objects.filter(pk=claim_id, contributor=contributor).first()
    if claim is None:
        raise Refused(404, "claim_not_found", "No such claim of yours.")
    _check_relayable(claim, cfg, clock)
    relayer = relayer_account()
    w3 = _node()
    data = chain.encode_claim_call(
        claim.account, claim.cumulative_wei, claim.deadline, claim.signature
    )
    try:
        max_fee, tip, gas = _prepare(w3, relayer, cfg, data)
        with transaction.atomic():
            Contributor.objects.select_for_update().filter(pk=contributor.pk).first()
            claim = Claim.objects.select_for_update().get(pk=claim.pk)
            _check_relayable(claim, cfg, clock)
            sent_at = timezone.now()
            _check_limit(contributor, sent_at)
            _check_budget(sent_at)
            lane = _lane(cfg, relayer)
            tx = {
                "chainId": cfg.chain_id,
                "to": cfg.distributor,
                "data": data,
                "value": 0,
                "gas": gas,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": tip,
                "type": 2,
            }
            tx_hash, nonce = _send(w3, relayer, tx)
            Claim.objects.filter(pk=claim.pk).update(
                status=Claim.Status.SUBMITTED,
                tx_hash=tx_hash,
                submitted_at=sent_at,
                relayed_at=sent_at,
            )
            Relayer.objects.filter(pk=lane.pk).update(
                last_nonce=nonce, last_tx_hash=tx_hash, sent=lane.sent + 1, updated_at=sent_at
            )
    except OSError as exc:  # requests' errors are OSErrors: the node is down or too slow
        raise _unavailable(exc) from None
    claim.refresh_from_db()
    log.info("relay: claim %s sent in %s", claim.pk, claim.tx_hash)
    return claim


def _prepare(w3, relayer, cfg, data: str) -> tuple[int, int, int]:
    """(maxFeePerGas, tip, gas), read from the node with no lock held; Refused when the
    relayer cannot or should not pay."""
    max_fee, tip = _fees(w3)
    # Checked before estimating: a node estimates nothing for a sender that cannot pay.
    balance = w3.eth.get_balance(relayer.address)
    if balance < CLAIM_GAS_BOUND * max_fee:
        log.error(
            "relay: relayer %s has %s wei, needs %s: top it up", relayer.address, balance,
            CLAIM_GAS_BOUND * max_fee,
        )  # fmt: skip
        raise Refused(
            503,
            "relayer_underfunded",
            "The portal's relayer cannot pay the gas right now; send the claim from your "
            "wallet, or try again later.",
        )
    call = {"from": relayer.address, "to": cfg.distributor, "data": data}
    try:
        gas = w3.eth.estimate_gas(call) * GAS_HEADROOM_PCT // 100
    except _reverts() as exc:
        raise Refused(
            409,
            "claim_would_revert",
            f"The distributor would refuse this voucher ({exc}); it was not sent.",
        ) from None
    except (Web3Exception, ValueError) as exc:
        raise Refused(503, "relay_failed", f"The chain node could not price it: {exc}") from None
    if gas > CLAIM_GAS_BOUND:
        # Sent with less gas it would run out and still cost the relayer: refused instead.
        raise Refused(
            409,
            "claim_too_costly",
            f"This claim needs {gas} gas, more than the portal pays ({CLAIM_GAS_BOUND}); "
            "send it from your wallet.",
        )
    return max_fee, tip, gas


def _lane(cfg, relayer) -> Relayer:
    lane, _ = Relayer.objects.get_or_create(chain_id=cfg.chain_id, address=relayer.address)
    return Relayer.objects.select_for_update().get(pk=lane.pk)


def _check_budget(now) -> None:
    """The relayer's own cap: relays of everyone in 24 hours (a contributor's transactions
    may still revert, e.g. raced by the same voucher from their wallet, and cost gas)."""
    budget = settings.CLAIM_RELAY_NETWORK_PER_DAY
    if Claim.objects.filter(relayed_at__gte=now - timedelta(days=1)).count() >= budget:
        refusal = Refused(
            429,
            "relay_budget_spent",
            "The portal has sent as many claims today as it pays for; send this one from your "
            "wallet, or try again later.",
        )
        refusal.extra["retry_after_s"] = 3600
        raise refusal


def _send(w3, relayer, tx: dict) -> tuple[str, int]:
    """Sign and send with the node's next nonce; (hash, nonce). A nonce another sender took
    meanwhile (a key shared elsewhere, a node behind a balancer) is retried one past it; any
    other refusal is 503 relay_failed, and nothing was sent."""
    nonce = w3.eth.get_transaction_count(relayer.address, "pending")
    for attempt in range(NONCE_RETRIES + 1):
        signed = relayer.sign_transaction({**tx, "nonce": nonce})
        try:
            w3.eth.send_raw_transaction(signed.raw_transaction)
        except (Web3Exception, ValueError, EthValidationError, *_reverts()) as exc:
            if "nonce" in str(exc).lower() and attempt < NONCE_RETRIES:
                nonce = max(nonce + 1, w3.eth.get_transaction_count(relayer.address, "pending"))
                continue
            log.warning("relay: the node refused the transaction: %s", exc)
            raise Refused(
                503, "relay_failed", f"The chain node refused the transaction: {exc}"
            ) from None
        return "0x" + bytes(signed.hash).hex(), nonce
    raise AssertionError("unreachable")  # pragma: no cover
