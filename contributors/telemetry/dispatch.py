"""Getting stored batches to a worker: one drain message per slot at a time, never one per
batch, and a broker that is down costing the web process nothing but a log line.

Every accepted batch is durable in the database before it is answered, so nothing here is the
only copy of anything: a message lost, a flag lapsed or a broker down for a while only delays a
batch until the next drain of its slot or the sweeper (`sweep`) stores it.

Drain flags: "a drain of this slot is queued or running, and will look for new batches before
it ends", a lease in the shared cache, not a lock. A running drain renews it on every pass, so
it never lapses under a drain that is working; a drain that was lost (its worker killed, its
message gone with a broker) stops renewing it, and within DRAIN_FLAG_TTL_S the next request, or
the sweeper, asks for a new one. A lease that lapses under a drain that is only slow costs one
more drain, which takes other batches (they never take the same one) or finds none and ends.

What a process remembers between requests (when the broker failed, which flags it saw set) is
one `Dispatcher`; `forget` drops it (tests start without it).
"""

import logging
import time

from django.conf import settings

from contributors.telemetry import store
from portal.lib import hotcache

# Broker trouble is logged under the tasks' name, where operators (and tests) look for it.
log = logging.getLogger("contributors.tasks")

DRAIN_FLAG = "ingest:drain:{slot}"
DRAIN_FLAG_TTL_S = 3
# A drain waits this long between clearing its flag and its last look. So a web process that
# saw the flag set less than half of it ago may skip asking again: that look comes after its
# commit (the flag was cleared after the process saw it, and the look comes a grace later).
DRAIN_GRACE_S = 0.2
# With the cache down no flag can say that a drain is on its way: each process then asks for
# a drain of a slot at most this often (a drain stores everything pending before it ends).
BLIND_DRAIN_EVERY_S = 1.0
# After a failed publish a process stops trying for a while: during a broker outage each
# telemetry request would otherwise spend the connect timeout, holding a web worker, for a
# batch that is already durable and that a drain or the sweeper stores once the broker is back.
BROKER_BACKOFF_S = 2.0


def _tasks():
    from contributors import tasks  # the tasks call into this module

    return tasks


class Dispatcher:
    """What one process remembers between requests, and the decisions made from it."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        self.broker_down_until = 0.0
        self.flag_seen_at: dict[int, float] = {}  # slot -> when this process saw its flag set
        self.blind_drain_at: dict[int, float] = {}  # slot -> when it asked with the cache down

    def publish(self, task, args: list, what: str, force: bool) -> bool:
        """Send a task message; False (and logged) if the broker refused it or failed a moment
        ago. `force` ignores that backoff (admins and the sweeper are not in a hurry)."""
        if not force and time.monotonic() < self.broker_down_until:
            return False
        try:
            task.apply_async(args=args, retry=False)
        except Exception:  # any broker failure; the batch is safe in the database
            self.broker_down_until = time.monotonic() + BROKER_BACKOFF_S
            log.warning(
                "could not enqueue %s; not trying again for %.0f s, a drain or the sweeper will",
                what,
                BROKER_BACKOFF_S,
                exc_info=True,
            )
            return False
        return True

    def ensure_drain(self, slot: int, force: bool) -> str:
        """What became of a drain of `slot`: "covered" (one is on its way), "sent" (this call
        sent one) or "failed" (the broker is down)."""
        now = time.monotonic()
        if now - self.flag_seen_at.get(slot, -DRAIN_GRACE_S) < DRAIN_GRACE_S / 2:
            return "covered"  # under load: most batches are covered without a round trip
        flag = DRAIN_FLAG.format(slot=slot)
        added = hotcache.add_flag(flag, DRAIN_FLAG_TTL_S)
        if added is False:
            self.flag_seen_at[slot] = now
            return "covered"
        if added is None:  # the cache is down
            if now - self.blind_drain_at.get(slot, -BLIND_DRAIN_EVERY_S) < BLIND_DRAIN_EVERY_S:
                return "covered"
            self.blind_drain_at[slot] = now
        if not self.publish(_tasks().drain_batches, [slot], f"a drain of slot {slot}", force):
            if added:
                hotcache.delete(flag)
            return "failed"
        if added:
            self.flag_seen_at[slot] = now
        return "sent"


_dispatcher = Dispatcher()


def forget() -> None:
    """Forget what this process remembered: a broker failure, the flags it saw set."""
    _dispatcher.forget()


def request_drain(node_pk: int) -> bool:
    """After a batch of `node_pk` committed: make sure a drain will look for it.

    One message per drain slot at a time instead of one per batch: if the slot's flag is set,
    its drain has not yet made its final check (`run_drain` clears the flag before it), so
    that check comes after this batch's commit and claims it. True if a drain will run.

    Never raises: it runs after the commit, when the batch is durable and answered 202 whatever
    happens here (a drain or the sweeper stores it later).
    """
    try:
        return _dispatcher.ensure_drain(node_pk % settings.INGEST_DRAINS, force=False) != "failed"
    except Exception:
        log.exception("could not ask for a drain after a batch of node %s", node_pk)
        return False


def enqueue_ingest(batch_pk: int, *, force: bool = False) -> bool:
    """Send one batch to a worker; False (and logged) if the broker is down: the sweeper retries.

    `force` ignores the backoff (admins use it: they are not in a hurry).
    """
    return _dispatcher.publish(_tasks().ingest_batch, [batch_pk], f"batch {batch_pk}", force)


def run_drain(slot: int) -> int:
    """Store pending batches, many per transaction, until none is left; returns the samples.

    When a pass took fewer batches than it could, the drain waits INGEST_DRAIN_PAUSE_S before
    the next, so that under load each transaction stores dozens of batches instead of one or
    two (the cost of a transaction is mostly per statement, not per row). It runs at most
    INGEST_DRAIN_MAX_S, then hands over to a fresh message, so that other tasks get their turn
    and no drain outlives the task time limit. Before it ends it clears its slot's flag and,
    DRAIN_GRACE_S later, looks once more: a batch committed after that look finds the flag
    clear and publishes a new drain (see `request_drain`).
    """
    flag = DRAIN_FLAG.format(slot=slot)
    deadline = time.monotonic() + settings.INGEST_DRAIN_MAX_S
    stored = 0
    while True:
        hotcache.set_text(flag, "1", DRAIN_FLAG_TTL_S)  # the lease, renewed on every pass
        taken, samples = store.drain()
        stored += samples
        if taken:
            if time.monotonic() > deadline:
                handover = _tasks().drain_batches
                if not _dispatcher.publish(handover, [slot], f"a drain of slot {slot}", True):
                    hotcache.delete(flag)
                return stored
            if taken < settings.INGEST_DRAIN_BATCHES:
                time.sleep(settings.INGEST_DRAIN_PAUSE_S)
            continue
        hotcache.delete(flag)
        time.sleep(DRAIN_GRACE_S)
        taken, samples = store.drain()
        stored += samples
        # Nothing new, or a newer drain of this slot takes over (with the cache down nobody
        # can tell: this one goes on).
        if not taken or hotcache.add_flag(flag, DRAIN_FLAG_TTL_S) is False:
            return stored


def sweep() -> int:
    """Ask for a drain of every slot whose flag is clear while a batch has been pending longer
    than INGEST_SWEEP_AFTER_S: its drain was lost (a killed worker, a broker that lost its
    queue, a cache or broker that was down) and no request came since to ask for another.
    Returns the drains sent. Drains, not one message per batch: a drain stores every pending
    batch, oldest first, and does not wait behind thousands of messages."""
    if not store.stale_batch_ids(limit=1):
        return 0
    outcomes = [
        _dispatcher.ensure_drain(slot, force=True) for slot in range(settings.INGEST_DRAINS)
    ]
    sent = outcomes.count("sent")
    if sent:
        log.info("sweeper found batches waiting and sent %s drains", sent)
    return sent
