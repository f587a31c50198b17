"""The request side of telemetry: authenticate, validate, store the batch durably, answer.

The usual report of a remembered agent (`known_agents`) costs one cache round trip (its rate
limit and the entry) and one INSERT that checks the token itself (`accept_known`); anything else
takes the full path: one query reads the node and its GPUs (`authenticate`), the inventory is
registered if one came, and the same INSERT runs (`accept`). The samples are stored later, by a
worker (`store`), which the caller asks for on commit (`dispatch.request_drain`).

The token is checked before the body is read: a remembered entry exists only for the digest of
a token that authenticated, and any other token is looked up first, so a token that is not
valid costs a hash and one indexed lookup, never a read or a parse.
"""

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from contributors import tokens
from contributors.models import GPU, Node, TelemetryBatch
from contributors.telemetry import known_agents
from contributors.telemetry.inventory import GpuLimits, Inventory, flag_implausible, register_gpus
from contributors.telemetry.known_agents import KnownAgent
from contributors.telemetry.sql import backend
from contributors.telemetry.sql.common import AGENT_GPU_COLUMNS, AGENT_NODE_COLUMNS
from contributors.telemetry.validation import (
    BatchFields,
    Report,
    accepted_window,
    batch_fields,
    named_gpus,
    normal_uuid,
    sent_inventory,
    validate_sample,
    validate_typed_sample,
)
from contributors.verification import challenges
from portal.lib import ratelimit
from portal.lib.errors import ApiError, Refused


class Result(enum.Enum):
    ACCEPTED = 202  # a new batch, stored
    REPLAYED = 200  # the node sent this batch_id before: the first answer, nothing stored


@dataclass
class NewBatch:
    """A `TelemetryBatch` row about to be inserted (its columns; `pk` once it is)."""

    node_id: int
    batch_id: uuid.UUID
    received_at: datetime
    sent_at: datetime
    clock_skew_s: float
    samples: list
    sample_count: int
    response: dict
    status: str
    processed_at: datetime | None
    attempts: int = 0
    error: str = ""
    pk: int | None = None
    # GPU id -> what its node reported that no hardware produces (not a column: flags).
    implausible: dict[int, str] = field(default_factory=dict)


@dataclass
class Outcome:
    result: Result
    body: dict
    node_id: int
    enqueue: bool = False  # samples wait for a worker: ask for a drain once committed
    gpus: dict[str, GpuLimits] | None = None  # the node's GPUs after a full report

    @property
    def status(self) -> int:
        return self.result.value


@dataclass
class AgentNode:
    """A node as the telemetry path needs it, read with its GPUs in one query.

    `gpu_rows` are plain tuples in AGENT_GPU_COLUMNS order: most reports only need uuid -> id,
    and building model instances for every GPU of every report is a measurable cost.
    """

    node: Node
    revoked: bool
    gpu_rows: list[tuple]


def authenticate(token: str) -> AgentNode | None:
    """The node holding `token` and its GPUs (one query), or None for any other token."""
    prefix = tokens.split_prefix(token, Node.SCHEME)
    if prefix is None:
        return None
    rows = backend().agent_rows(prefix)
    if not rows:
        return None
    split = len(AGENT_NODE_COLUMNS)
    node = Node.from_db(connection.alias, AGENT_NODE_COLUMNS, rows[0][:split])
    if not tokens.matches(token, node.token_hash):
        return None
    gpu_rows = [row[split + 1 :] for row in rows if row[split + 1] is not None]
    return AgentNode(node=node, revoked=bool(rows[0][split]), gpu_rows=gpu_rows)


def receive(
    token: str,
    read_body: Callable[[], Report | dict],
    refuse_token: Callable[[bool, bool], None],
) -> Outcome:
    """One telemetry request of the holder of `token`, from rate limit to stored batch.

    `read_body` reads the body (`validation.read_report`; called only once the token is known
    to be valid);
    `refuse_token(found, revoked)` raises the 401 or 403 for a token that is not valid.
    """
    digest = tokens.digest(token)
    agent_node = None
    try:
        remembered = ratelimit.enforce(
            "telemetry",
            digest,
            settings.TELEMETRY_RATE_PER_MIN,
            f"At most {settings.TELEMETRY_RATE_PER_MIN} telemetry requests a minute per node.",
            fetch=known_agents.cache_key(digest),
        )
    except ApiError:
        # Throttled: a token that is not (or no longer) valid hears that first, as agents
        # stop on 401/403 but only wait on 429.
        _authenticated(token, digest, refuse_token)
        raise
    known = KnownAgent.loads(remembered)
    if known is None:
        agent_node = _authenticated(token, digest, refuse_token)
    body = read_body()
    outcome = None if known is None else accept_known(known, digest, body)
    if outcome is None:
        agent_node = agent_node or _authenticated(token, digest, refuse_token)
        outcome = accept(agent_node.node, body, gpu_rows=agent_node.gpu_rows)
        if outcome.result is Result.ACCEPTED and "rejected_gpus" not in outcome.body:
            known_agents.remember(digest, outcome.node_id, outcome.gpus, sent_inventory(body))
        # The fast path never runs while a challenge waits for this node (its INSERT's guard),
        # so the full path is where the answer carries challenges until they are committed.
        waiting = challenges.waiting_for(outcome.node_id)
        if waiting:
            outcome.body = {**outcome.body, "challenges": waiting}
    return outcome


def _authenticated(token: str, digest: str, refuse_token) -> AgentNode:
    """The token's node and GPUs, or what `refuse_token` raises. A token that is not valid
    leaves nothing in the cache: its counter and entry are dropped."""
    agent_node = authenticate(token)
    if agent_node is None or agent_node.revoked:
        known_agents.forget(digest)
        ratelimit.forget("telemetry", digest)
    refuse_token(agent_node is not None, agent_node is not None and agent_node.revoked)
    return agent_node


def _new_batch(
    node_id: int, fields: BatchFields, now: datetime, inventory: Inventory, gpu_rejections: list
) -> NewBatch:
    """The batch row for a report: its accepted samples and the answer the agent gets."""
    batch_id, sent_at, samples = fields.batch_id, fields.sent_at, fields.samples
    accepted, rejected, seen, implausible = [], [], set(), {}
    window = accepted_window(now)
    gpus, foreign = inventory.gpus, inventory.foreign
    if fields.typed:
        times = {}  # each distinct time of the batch parsed once
        checked = (validate_typed_sample(item, gpus, foreign, window, times) for item in samples)
    else:
        checked = (validate_sample(item, gpus, foreign, window) for item in samples)
    for index, (sample, error, why) in enumerate(checked):
        if sample is None:
            rejected.append({"index": index, "error": error})
            if why:
                implausible.setdefault(*why)
            continue
        key = (sample[0], sample[1])  # GPU and time
        if key not in seen:  # the same reading twice in one batch counts once
            seen.add(key)
            accepted.append(sample)

    response = {"batch_id": str(batch_id), "accepted": len(accepted), "rejected": rejected}
    if gpu_rejections:
        response["rejected_gpus"] = gpu_rejections
    return NewBatch(
        node_id=node_id,
        batch_id=batch_id,
        received_at=now,
        sent_at=sent_at,
        clock_skew_s=(sent_at - now).total_seconds(),
        samples=accepted,
        sample_count=len(accepted),
        response=response,
        status=TelemetryBatch.Status.PENDING if accepted else TelemetryBatch.Status.PROCESSED,
        processed_at=None if accepted else now,
        implausible=implausible,
    )


def _accepted(batch: NewBatch, now: datetime, gpus: dict | None = None) -> Outcome:
    flag_implausible(batch.node_id, batch.implausible, now)
    return Outcome(
        Result.ACCEPTED, batch.response, batch.node_id, enqueue=bool(batch.sample_count), gpus=gpus
    )


def accept(
    node: Node,
    body: Report | dict,
    now: datetime | None = None,
    gpu_rows: list[tuple] | None = None,
) -> Outcome:
    """Validate and store one telemetry request of `node` (the full path); the caller asks
    for a drain on commit. `gpu_rows`: the node's GPUs if already read (see `authenticate`).
    """
    now = now or timezone.now()
    fields = batch_fields(body)
    if gpu_rows is None:
        known = list(node.gpus.all())
    else:
        known = [GPU.from_db(connection.alias, AGENT_GPU_COLUMNS, row) for row in gpu_rows]
    if fields.gpus:
        gpu_rejections, inventory = register_gpus(node, fields.gpus, now, known)
    else:
        gpu_rejections, inventory = [], Inventory.of_rows(known)
    named = {normal_uuid(u) or u for u in named_gpus(fields)}
    unknown = {u for u in named if u not in inventory.gpus}
    if unknown:
        inventory.note_foreign(node, unknown, now)

    batch = _new_batch(node.pk, fields, now, inventory, gpu_rejections)
    batch.pk = backend().insert_batch(batch)
    if batch.pk is None:
        # A replay (or the same batch racing in on another connection): the first answer.
        first = TelemetryBatch.objects.values("response").get(node=node, batch_id=fields.batch_id)
        return Outcome(Result.REPLAYED, first["response"], node.pk)
    return _accepted(batch, now, inventory.gpus)


def accept_known(
    known: KnownAgent, token_digest: str, body: Report | dict, now: datetime | None = None
) -> Outcome | None:
    """The usual report of a remembered agent, with one statement; None if it needs the full
    path (`accept` after `authenticate`): a new inventory, a GPU the entry does not know, a
    body to refuse, or an INSERT that inserted nothing. That is a replay, or a token, node or
    GPU that is no longer what the entry says (the guard failed): the statement cannot say
    which, and the full path answers each as it should (200 with the first answer, 401/403).
    """
    now = now or timezone.now()
    try:
        fields = batch_fields(body)
    except Refused:
        return None  # answered by the full path, which first says whether the token is valid
    if fields.gpus and not known.sent_same_inventory(fields.gpus):
        return None
    if not named_gpus(fields) <= known.gpus.keys():
        return None
    batch = _new_batch(known.node_id, fields, now, Inventory(gpus=known.gpus), [])
    gpu_ids = sorted({sample[0] for sample in batch.samples})
    batch.pk = backend().insert_batch(batch, guard=(token_digest, gpu_ids))
    if batch.pk is None:
        return None
    return _accepted(batch, now)
