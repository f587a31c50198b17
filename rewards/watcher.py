"""The claim watcher: follows the distributor's `Claimed` events and settles claims by them.

Run from Celery beat (rewards.watch_claims). It reads only blocks with CHAIN_CONFIRMATIONS
blocks on top, so a reorg within that depth never reaches the database; at the start of each
run it checks that the last block it applied is still on the chain, and stops loudly if not
(a reorg deeper than the confirmation depth needs a person). Each chunk of blocks is applied in
one transaction that also advances the cursor with a guarded update, so two watchers, a crash
between chunks or a rerun apply every event exactly once.

Applying a block range: store its Claimed events; confirm every open claim of the account whose
cumulative the event covers (claims submitted outside the portal included); then expire open
claims whose deadline lies before the last block read. A voucher's transaction can only be in a
block at or before its deadline, and all of those have been read, so an expired voucher can
never pay again and its amount may be vouchered again (rewards.claims).
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from eth_utils import to_checksum_address
from web3 import Web3

from rewards import chain
from rewards.models import ChainCursor, Claim, ClaimEvent

log = logging.getLogger(__name__)

CLAIMED_TOPIC = "0x" + Web3.keccak(text="Claimed(address,uint256,uint256)").hex().removeprefix("0x")


class DeepReorg(Exception):
    """The chain no longer holds a block the watcher applied: deeper than the confirmations."""


class CursorMoved(Exception):
    """Another watcher applied this range first."""


@dataclass
class WatchResult:
    from_block: int
    to_block: int
    events: int = 0
    confirmed: int = 0
    expired: int = 0


def _hex(value) -> str:
    text = value.hex() if hasattr(value, "hex") else str(value)
    return text if text.startswith("0x") else "0x" + text


def _utc(timestamp: int | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def _cursor(chain_id: int, distributor: str) -> ChainCursor:
    try:
        cursor, _ = ChainCursor.objects.get_or_create(
            chain_id=chain_id,
            distributor=distributor,
            defaults={"block_number": settings.DISTRIBUTOR_DEPLOY_BLOCK - 1},
        )
    except IntegrityError:  # another watcher created it between our read and our insert
        cursor = ChainCursor.objects.get(chain_id=chain_id, distributor=distributor)
    return cursor


def watch(w3=None) -> WatchResult | None:
    """Read confirmed blocks since the last run and apply them; None when no chain is set up."""
    w3 = w3 or chain.web3()
    if w3 is None or not settings.DISTRIBUTOR_ADDRESS:
        return None
    chain_id = settings.CHAIN_ID
    distributor = to_checksum_address(settings.DISTRIBUTOR_ADDRESS)
    contract = chain.distributor_contract(w3, distributor)
    cursor = _cursor(chain_id, distributor)
    if cursor.block_hash and _hex(w3.eth.get_block(cursor.block_number)["hash"]) != (
        cursor.block_hash
    ):
        raise DeepReorg(
            f"block {cursor.block_number} ({cursor.block_hash}) is no longer on chain {chain_id}: "
            f"a reorg deeper than CHAIN_CONFIRMATIONS={settings.CHAIN_CONFIRMATIONS}"
        )
    safe = w3.eth.block_number - settings.CHAIN_CONFIRMATIONS
    result = WatchResult(from_block=cursor.block_number + 1, to_block=cursor.block_number)
    start = cursor.block_number + 1
    while start <= safe:
        end = min(safe, start + settings.CLAIM_WATCH_MAX_BLOCKS - 1)
        logs = w3.eth.get_logs(
            {"address": distributor, "fromBlock": start, "toBlock": end, "topics": [CLAIMED_TOPIC]}
        )
        events = [contract.events.Claimed().process_log(entry) for entry in logs]
        block = w3.eth.get_block(end)
        # When each payment happened (the tax export's date): one read per block with events.
        times = {n: w3.eth.get_block(n)["timestamp"] for n in {e["blockNumber"] for e in events}}
        try:
            applied = apply_range(chain_id, distributor, start - 1, block, events, times)
        except CursorMoved:
            log.info("another watcher applied blocks from %s first", start)
            break
        result.to_block = end
        result.events += len(events)
        result.confirmed += applied[0]
        result.expired += applied[1]
        start = end + 1
    return result


@transaction.atomic
def apply_range(
    chain_id: int, distributor: str, after_block: int, block, events, block_times=None
) -> tuple:
    """Apply the Claimed `events` of blocks (after_block, block.number]; (confirmed, expired).

    `block_times` maps the events' block numbers to their timestamps (Unix seconds)."""
    block_times = block_times or {}
    moved = ChainCursor.objects.filter(
        chain_id=chain_id, distributor=distributor, block_number=after_block
    ).update(
        block_number=block["number"],
        block_hash=_hex(block["hash"]),
        block_timestamp=block["timestamp"],
        updated_at=timezone.now(),
    )
    if not moved:
        raise CursorMoved
    confirmed = 0
    for event in events:
        account = to_checksum_address(event["args"]["account"])
        cumulative = int(event["args"]["cumulativeAmount"])
        tx_hash = _hex(event["transactionHash"])
        _, created = ClaimEvent.objects.get_or_create(
            chain_id=chain_id,
            tx_hash=tx_hash,
            log_index=event["logIndex"],
            defaults={
                "distributor": distributor,
                "account": account,
                "amount_wei": int(event["args"]["amount"]),
                "cumulative_wei": cumulative,
                "block_number": event["blockNumber"],
                "block_hash": _hex(event["blockHash"]),
                "block_time": _utc(block_times.get(event["blockNumber"])),
            },
        )
        if created:
            confirmed += confirm_covered(chain_id, distributor, account, cumulative, tx_hash, event)
    return confirmed, expire_before(chain_id, distributor, block["timestamp"])


def confirm_covered(chain_id, distributor, account, cumulative, tx_hash, event) -> int:
    """Confirm the account's open claims whose cumulative this payment reached."""
    open_claims = Claim.objects.filter(
        chain_id=chain_id,
        distributor=distributor,
        account=account,
        status__in=(Claim.Status.ISSUED, Claim.Status.SUBMITTED),
    ).values_list("pk", "cumulative_wei")
    # Compared in Python: a WeiField is text on SQLite.
    covered = [pk for pk, amount in open_claims if amount <= cumulative]
    return Claim.objects.filter(
        pk__in=covered, status__in=(Claim.Status.ISSUED, Claim.Status.SUBMITTED)
    ).update(
        status=Claim.Status.CONFIRMED,
        tx_hash=tx_hash,
        confirmed_block=event["blockNumber"],
        confirmed_at=timezone.now(),
    )


def expire_before(chain_id: int, distributor: str, chain_time: int) -> int:
    """Open claims whose deadline is before `chain_time` (of a block already applied) expire."""
    return Claim.objects.filter(
        chain_id=chain_id,
        distributor=distributor,
        status__in=(Claim.Status.ISSUED, Claim.Status.SUBMITTED),
        deadline__lt=chain_time,
    ).update(status=Claim.Status.EXPIRED, expired_at=timezone.now())
