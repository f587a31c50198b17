"""Posting spooled batches to ``POST /api/v1/agent/telemetry`` and reacting to each answer.

| answer            | what happens                                                        |
| 200 / 202         | mark the batch sent (200 is the portal replaying its first answer); |
|                   | the answer goes to ``on_answer`` (it may carry proof challenges)     |
| 401 / 403         | raise ``AuthError``: the token is wrong or revoked, retrying is futile |
| 400 / 413 / 422   | drop the batch and say so: the same bytes can never succeed           |
| 429               | wait ``Retry-After`` seconds, then resend the same batch              |
| 5xx, no answer    | exponential backoff with jitter, capped; resend the same batch        |
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from omnitensor_agent.api import NetworkError, PortalClient
from omnitensor_agent.readings import rfc3339
from omnitensor_agent.spool import Spool

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 300.0
RETRY_AFTER_CAP_S = 3600.0  # a broken header must not park the agent for days


class AuthError(RuntimeError):
    """The portal refused the node token (401/403): re-enroll or fix the config."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        hint = (
            "the node token was revoked in the portal"
            if status == 403
            else "the node token is not valid"
        )
        super().__init__(
            f"The portal refused this node ({status} {detail}): {hint}. "
            "Create a new enrollment code in the portal and run `omnitensor-agent enroll`."
        )


class Outcome(Enum):
    SENT = "sent"
    DROPPED = "dropped"
    RETRY = "retry"
    EMPTY = "empty"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds, from either form HTTP allows (seconds or a date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


class Sender:
    def __init__(
        self,
        client: PortalClient,
        spool: Spool,
        *,
        sleep: Callable[[float], Any] = time.sleep,
        rng: random.Random | None = None,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
        on_answer: Callable[[Any, bool], Any] | None = None,
    ) -> None:
        self.client = client
        self.spool = spool
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        # Called with (answer body, replayed?) for every accepted batch.
        self.on_answer = on_answer
        self.failures = 0  # consecutive transient failures, drives the backoff
        self.retry_in: float = 0.0

    def backoff_delay(self) -> float:
        """Capped exponential with "equal jitter": half fixed, half random, so that many
        agents knocked off by one outage do not come back in lockstep."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** max(0, self.failures - 1))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def send_one(self, gpus: list[dict[str, Any]] | None = None) -> Outcome:
        """Send the oldest pending batch once. On RETRY, ``retry_in`` says how long to wait."""
        batch = self.spool.next_batch()
        if batch is None:
            return Outcome.EMPTY
        body: dict[str, Any] = {
            "batch_id": batch.batch_id,
            "sent_at": rfc3339(datetime.now(UTC)),
            "samples": batch.samples,
        }
        if gpus:
            body["gpus"] = gpus
        try:
            resp = self.client.telemetry(body)
        except NetworkError as exc:
            return self._transient(f"network error: {exc}")
        status = resp.status
        if status in (200, 202):
            self.failures = 0
            self.spool.mark_sent(batch.batch_id)
            rejected = resp.body.get("rejected") if isinstance(resp.body, dict) else None
            if rejected:
                # Per-sample rejections are final: resending the batch id returns the same answer.
                log.warning(
                    "batch %s: portal rejected %d of %d samples (first: %s)",
                    batch.batch_id,
                    len(rejected),
                    len(batch.samples),
                    rejected[0],
                )
            if self.on_answer is not None:
                self.on_answer(resp.body, status == 200)
            return Outcome.SENT
        if status in (401, 403):
            raise AuthError(status, resp.error)
        if status == 429:
            delay = parse_retry_after(resp.headers.get("Retry-After"))
            self.retry_in = delay if delay is not None else self.backoff_delay()
            log.info("portal throttled us (429); retrying in %.1f s", self.retry_in)
            return Outcome.RETRY
        if 400 <= status < 500 and status not in (408, 409, 425):
            # 400 validation_failed / 413 batch_too_large: resending the same batch id and
            # content cannot succeed; keeping it would block every batch behind it.
            dropped = self.spool.drop_batch(batch.batch_id)
            log.error(
                "portal refused batch %s (%d %s): dropped its %d samples, they will not be sent",
                batch.batch_id,
                status,
                resp.error,
                dropped,
            )
            return Outcome.DROPPED
        return self._transient(f"HTTP {status} {resp.error}")

    def _transient(self, why: str) -> Outcome:
        self.failures += 1
        self.retry_in = self.backoff_delay()
        log.warning("sending failed (%s); retry %d in %.1f s", why, self.failures, self.retry_in)
        return Outcome.RETRY

    def flush(
        self,
        gpus: list[dict[str, Any]] | None = None,
        *,
        max_attempts: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Send until the spool is empty (or ``max_attempts`` sends, or ``should_stop``).

        Waits between retries with ``self.sleep``. Returns the number of batches sent.
        Inventory rides on the first batch only: it is an optional update, not per-batch data.
        """
        sent = attempts = 0
        while not should_stop():
            if max_attempts is not None and attempts >= max_attempts:
                break
            attempts += 1
            outcome = self.send_one(gpus if sent == 0 else None)
            if outcome is Outcome.EMPTY:
                break
            if outcome is Outcome.SENT:
                sent += 1
            elif outcome is Outcome.RETRY:
                self.sleep(self.retry_in)
        return sent
