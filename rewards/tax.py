"""The tax tool export (README "Tax-ready exports"): a contributor's OMNIT movements in the
"universal" CSV layout that Koinly and CoinTracking import, streamed.

Rows, oldest first:
- a reward: one row per settled epoch in which the contributor earned anything, at the epoch's
  close: Received Amount = the sum of their entries of the epoch (exact, 18 decimals), label
  `reward` (income), Net Worth = that sum at the price when the epoch closed (rewards.prices),
  empty with the reason in the description when no price is known;
- a claim: one row per on-chain payment (`Claimed` event) that confirmed the contributor's
  claims, at the block's time: Sent Amount = what the distributor paid, with the transaction
  hash and no label. Claiming moves tokens the contributor already earned (and was counted
  income for, above) into their own wallet: a withdrawal from the portal to their wallet, which
  a tax tool matches by TxHash with the deposit it sees in that wallet and treats as a transfer
  between own wallets, neither income nor a disposal. Gas is the sending wallet's (or the
  portal relayer's), so no fee here.

Like the rewards CSV (rewards.views.csv_lines) it reads epochs a slice at a time: per slice one
query for the entries and one for the prices. Claim payments are read up front in two queries
(a contributor has a claim or a few a day at most).
"""

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime

from django.db.models import Exists, OuterRef
from django.db.models.functions import Coalesce

from portal.lib.times import rfc3339
from rewards.models import Claim, ClaimEvent, Epoch, RewardEntry
from rewards.prices import PriceAt, epoch_prices, with_quote
from rewards.wei import omnit

UNIVERSAL_COLUMNS = [
    "Date", "Sent Amount", "Sent Currency", "Received Amount", "Received Currency",
    "Fee Amount", "Fee Currency", "Net Worth Amount", "Net Worth Currency", "Label",
    "Description", "TxHash",
]  # fmt: skip
SYMBOL = "OMNIT"
REWARD_LABEL = "reward"
# A claim is a transfer to the contributor's own wallet: no label (a tax tool's plain
# withdrawal, matched with the wallet's deposit by TxHash).
CLAIM_LABEL = ""
EPOCHS_PER_QUERY = 168


def omnit_plain(wei: int) -> str:
    """Wei as OMNIT with all 18 decimals and no grouping, exact."""
    sign = "-" if wei < 0 else ""
    whole, fraction = divmod(abs(wei), 10**18)
    return f"{sign}{whole}.{fraction:018d}"


# --- the export's period ----------------------------------------------------------------------


class BadPeriod(ValueError):
    pass


def export_period(params) -> tuple[datetime, datetime] | None:
    """`?year=2025`: [that year's start, the next's) in UTC; absent or empty: everything.
    Anything else raises BadPeriod (the view answers 400)."""
    raw = params.get("year")
    if raw is None or raw == "":
        return None
    if not (isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) == 4):
        raise BadPeriod("year must be a year of four digits, e.g. 2025")
    year = int(raw)
    if not 1970 <= year <= 9998:
        raise BadPeriod("year must be between 1970 and 9998")
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


def settled_epochs(period) -> list[tuple[int, datetime, datetime]]:
    """(pk, start, end) of every settled epoch, by close; within `period` by their close."""
    epochs = Epoch.objects.filter(status=Epoch.Status.SETTLED)
    if period is not None:
        epochs = epochs.filter(end__gte=period[0], end__lt=period[1])
    return list(epochs.order_by("end").values_list("pk", "start", "end"))


# --- rows -------------------------------------------------------------------------------------


def _reward_row(start: datetime, end: datetime, kinds: dict, price: PriceAt) -> list[str]:
    total = sum(kinds.values())
    parts = ", ".join(f"{kind} {omnit(kinds[kind])}" for kind in sorted(kinds))
    description = (
        f"OmniTensor GPU rewards, epoch {rfc3339(start)} to {rfc3339(end)} ({parts} OMNIT)"
    )
    if not price.known:
        description += f"; {price.note}"
    if total < 0:
        # A correction that took back more than the epoch paid: tax tools refuse a negative
        # received amount, so it is written as sent.
        return [
            rfc3339(end, "seconds"), omnit_plain(-total), SYMBOL, "", "", "", "",
            price.value(-total), price.currency if price.known else "", "", description, "",
        ]  # fmt: skip
    return [
        rfc3339(end, "seconds"), "", "", omnit_plain(total), SYMBOL, "", "",
        price.value(total), price.currency if price.known else "", REWARD_LABEL, description, "",
    ]  # fmt: skip


def claim_payments(contributor, period) -> list[tuple[datetime, list[str]]]:
    """(time, row) of each on-chain payment that confirmed the contributor's claims, by time."""
    theirs = Claim.objects.filter(
        contributor=contributor,
        status=Claim.Status.CONFIRMED,
        chain_id=OuterRef("chain_id"),
        distributor=OuterRef("distributor"),
        account=OuterRef("account"),
        tx_hash=OuterRef("tx_hash"),
    )
    events = ClaimEvent.objects.filter(Exists(theirs)).annotate(
        when=Coalesce("block_time", "seen_at")
    )
    if period is not None:
        events = events.filter(when__gte=period[0], when__lt=period[1])
    rows = with_quote(events, "when").order_by("when", "pk").values_list(
        "chain_id", "account", "tx_hash", "amount_wei", "when", "block_time", "quote_at",
        "quote_price",
    )  # fmt: skip
    rows = list(rows)
    if not rows:
        return []
    claim_ids = defaultdict(list)
    confirmed = Claim.objects.filter(contributor=contributor, status=Claim.Status.CONFIRMED)
    for pk, chain_id, tx_hash in confirmed.order_by("pk").values_list("pk", "chain_id", "tx_hash"):
        claim_ids[(chain_id, tx_hash)].append(f"#{pk}")
    payments = []
    for chain_id, account, tx_hash, amount, when, block_time, quoted_at, quote in rows:
        price = PriceAt.of(when, quoted_at, quote)
        description = (
            f"Claim of OmniTensor rewards to own wallet {account} on chain {chain_id} "
            f"(portal claim {', '.join(claim_ids[(chain_id, tx_hash)])}): a transfer between "
            "own wallets, not income"
        )
        if block_time is None:
            description += "; time: when the portal saw it confirmed, not the block's"
        if not price.known:
            description += f"; {price.note}"
        row = [
            rfc3339(when, "seconds"), omnit_plain(amount), SYMBOL, "", "", "", "",
            price.value(amount), price.currency if price.known else "", CLAIM_LABEL,
            description, tx_hash,
        ]  # fmt: skip
        payments.append((when, row))
    return payments


def universal_lines(contributor, period=None):
    """The export's lines: the header, then rewards and claim payments by time (a reward before
    a payment of the same second)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(UNIVERSAL_COLUMNS)
    yield buffer.getvalue()
    payments = claim_payments(contributor, period)
    next_payment = 0
    epochs = settled_epochs(period)
    for first in range(0, len(epochs), EPOCHS_PER_QUERY):
        chunk = epochs[first : first + EPOCHS_PER_QUERY]
        ids = [pk for pk, _, _ in chunk]
        earned: dict = defaultdict(lambda: defaultdict(int))
        entries = RewardEntry.objects.filter(contributor=contributor, epoch_id__in=ids).order_by()
        for epoch_id, kind, amount in entries.values_list("epoch_id", "kind", "amount_wei"):
            earned[epoch_id][kind] += amount
        paid = [pk for pk in ids if sum(earned[pk].values()) != 0] if earned else []
        if not paid:
            continue
        prices = epoch_prices(paid)
        buffer.seek(0)
        buffer.truncate()
        for pk, start, end in chunk:
            if pk not in prices:
                continue
            while next_payment < len(payments) and payments[next_payment][0] < end:
                writer.writerow(payments[next_payment][1])
                next_payment += 1
            writer.writerow(_reward_row(start, end, dict(earned[pk]), prices[pk]))
        yield buffer.getvalue()
    if next_payment < len(payments):
        buffer.seek(0)
        buffer.truncate()
        for _, row in payments[next_payment:]:
            writer.writerow(row)
        yield buffer.getvalue()
