"""The request side of telemetry: validate a batch, store it durably, answer at once.

Kept to plain Python on purpose: this runs for every report of every GPU in the network, and a
serializer framework costs several times more per sample than these checks (FIELD-NOTES.md).
The worker side, turning stored batches into samples, is `contributors.ingest`.
"""

import hashlib
import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from contributors import plausible, tokens
from contributors.inventory import MAX_INVENTORY, Inventory, flag_foreign_gpus, register_gpus
from contributors.models import GPU, GpuFlag, Node, TelemetryBatch
from portal import db
from portal.api_errors import Refused

log = logging.getLogger(__name__)

MAX_UUID_LEN = 96
MAX_JOB_ID_LEN = 128
MAX_MEMORY_MIB = plausible.MAX_MEMORY_MIB
# Bounds a real GPU stays within; anything outside is a broken sensor or a forged report.
TEMPERATURE_RANGE_C = (-40.0, 150.0)
POWER_RANGE_W = (0.0, 5000.0)


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
    pk: int | None = None
    # GPU id -> what its node reported that no hardware produces (not a column: flags).
    implausible: dict[int, str] = field(default_factory=dict)

    def values(self) -> list:
        """The row's values for `insert_once`'s columns, as the database takes them: what
        Django's fields would give, without building a model instance on the hottest path."""
        ops, native_uuid = connection.ops, connection.features.has_native_uuid_field
        return [
            self.node_id,
            self.batch_id if native_uuid else self.batch_id.hex,
            ops.adapt_datetimefield_value(self.received_at),
            ops.adapt_datetimefield_value(self.sent_at),
            self.clock_skew_s,
            ops.adapt_json_value(self.samples, None),
            self.sample_count,
            ops.adapt_json_value(self.response, None),
            self.status,
            0,
            ops.adapt_datetimefield_value(self.processed_at),
            "",
        ]


@dataclass
class Outcome:
    status: int
    body: dict
    batch: NewBatch | None = None
    enqueue: bool = False
    gpus: dict[str, plausible.GpuLimits] | None = None  # the node's GPUs after the report


@dataclass
class AgentNode:
    """A node as the telemetry path needs it, read with its GPUs in one query.

    `gpu_rows` are plain tuples in `GPU_COLUMNS` order: most reports only need uuid -> id,
    and building model instances for every GPU of every report is a measurable cost.
    """

    node: Node
    revoked: bool
    gpu_rows: list[tuple]


def _in_model_order(model, names: set[str]) -> tuple[str, ...]:
    # Model.from_db takes values in the order of the model's fields.
    return tuple(f.attname for f in model._meta.concrete_fields if f.attname in names)


_NODE_COLUMNS = _in_model_order(Node, {"id", "name", "token_hash"})
GPU_COLUMNS = _in_model_order(
    GPU,
    {"id", "node_id", "uuid", "name", "memory_total_mib", "driver_version", "pci_bus_id",
     "mig_parent_id", "committed_memory_mib", "unrated"},
)  # fmt: skip


def authenticate(token: str) -> AgentNode | None:
    """The node holding `token` and its GPUs (one LEFT JOIN), or None for any other token.

    Only plain columns are read (no dates), so the rows need no database converters and the
    same code serves SQLite and PostgreSQL; `revoked` is computed by the database.
    """
    prefix = tokens.split_prefix(token)
    if prefix is None:
        return None
    q = connection.ops.quote_name
    columns = [f"n.{q(c)}" for c in _NODE_COLUMNS] + ["n.revoked_at IS NOT NULL"]
    columns += [f"g.{q(c)}" for c in GPU_COLUMNS]
    sql = (
        f"SELECT {', '.join(columns)} FROM {q(Node._meta.db_table)} n "  # noqa: S608 - our names
        f"LEFT JOIN {q(GPU._meta.db_table)} g ON g.node_id = n.id "
        "WHERE n.token_prefix = %s ORDER BY g.id"
    )
    rows = db.fetch(sql, [prefix])
    if not rows:
        return None
    split = len(_NODE_COLUMNS)
    node = Node.from_db(connection.alias, _NODE_COLUMNS, rows[0][:split])
    if not tokens.matches(token, node.token_hash):
        return None
    gpu_rows = [row[split + 1 :] for row in rows if row[split + 1] is not None]
    return AgentNode(node=node, revoked=bool(rows[0][split]), gpu_rows=gpu_rows)


def parse_time(value) -> datetime | None:
    """An RFC 3339 date-time with an offset, or None."""
    if not isinstance(value, str) or len(value) > 40 or "T" not in value.upper():
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return None
        # Every time is stored in UTC: one that cannot be expressed there is no time at all.
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def accepted_window(now: datetime) -> tuple[datetime, datetime]:
    """Sample times the portal accepts, from TELEMETRY_MAX_AGE_S ago to MAX_AHEAD_S ahead."""
    return (
        now - timedelta(seconds=settings.TELEMETRY_MAX_AGE_S),
        now + timedelta(seconds=settings.TELEMETRY_MAX_AHEAD_S),
    )


# A sample as a batch keeps it until a worker stores it: a list in this order, about half the
# size of an object with these keys (less to encode, write, read back and decode per batch).
SAMPLE_FIELDS = ("gpu", "ts", "util", "used", "total", "temp", "power", "job")


def stored_sample(item) -> list:
    """A batch's sample in SAMPLE_FIELDS order (batches accepted before the list form hold
    objects with those keys)."""
    if isinstance(item, dict):
        return [item[key] for key in SAMPLE_FIELDS]
    return item


# Per-sample errors that say the GPU's own node sent a reading no hardware produces: each opens
# (or renews) an `implausible_telemetry` flag on that GPU, which holds it out of rewards.
IMPLAUSIBLE_ERRORS = ("memory_used_exceeds_total", "implausible_telemetry")


def validate_sample(
    item, inventory: Inventory, window: tuple[datetime, datetime]
) -> tuple[list | None, str, tuple[int, str] | None]:
    """A sample normalised for storage (`SAMPLE_FIELDS`), or the error code that refuses it,
    and for an implausible reading, (its GPU's id, what was implausible)."""
    if not isinstance(item, dict):
        return None, "validation_failed", None
    uuid_ = item.get("gpu_uuid")
    ts = parse_time(item.get("ts"))
    used = item.get("memory_used_mib")
    total = item.get("memory_total_mib")
    if not isinstance(uuid_, str) or ts is None or not _is_int(used) or not _is_int(total):
        return None, "validation_failed", None
    limits = inventory.gpus.get(uuid_)
    if limits is None:
        # Registered uuids are in NVML's case; an agent that sends another still finds its GPU
        # (only a miss pays for the normalisation).
        uuid_ = plausible.normal_uuid(uuid_) or uuid_
        limits = inventory.gpus.get(uuid_)
    if limits is None:
        if uuid_ in inventory.foreign:
            return None, "gpu_owned_by_other_node", None
        return None, "unknown_gpu", None
    if not window[0] <= ts <= window[1]:
        return None, "timestamp_out_of_window", None
    if not (0 <= used <= MAX_MEMORY_MIB and 0 < total <= MAX_MEMORY_MIB):
        return None, "out_of_range", None
    if used > total:
        why = f"memory used {used} MiB above total {total} MiB"
        return None, "memory_used_exceeds_total", (limits.id, why)
    util = item.get("utilization_gpu_pct")
    if util is not None and (not _is_number(util) or not 0 <= util <= 100):
        return None, "out_of_range", None
    temperature = item.get("temperature_c")
    if temperature is not None and (
        not _is_number(temperature)
        or not TEMPERATURE_RANGE_C[0] <= temperature <= TEMPERATURE_RANGE_C[1]
    ):
        return None, "out_of_range", None
    power = item.get("power_w")
    if power is not None and (
        not _is_number(power) or not POWER_RANGE_W[0] <= power <= POWER_RANGE_W[1]
    ):
        return None, "out_of_range", None
    job_id = item.get("job_id")
    if job_id is not None and (
        not isinstance(job_id, str) or len(job_id) > MAX_JOB_ID_LEN or not job_id.isprintable()
    ):
        return None, "validation_failed", None
    why = plausible.implausibility(limits, util, used, total, power)
    if why:
        return None, "implausible_telemetry", (limits.id, why)
    # An unrated GPU counts with its capped memory, whatever its samples say.
    total = min(total, limits.total_mib)
    used = min(used, total)
    return (
        [limits.id, ts.isoformat(), util, used, total, temperature, power, job_id or ""],
        "",
        None,
    )


def _fields(body: dict) -> tuple[uuid.UUID, datetime, list, list]:
    """batch_id, sent_at, samples and gpus of a report, or the 400/413 that refuses it."""
    try:
        batch_id = uuid.UUID(str(body.get("batch_id")))
    except ValueError:
        raise Refused(
            400,
            "validation_failed",
            "batch_id must be a UUID.",
            [{"field": "batch_id", "error": "a UUID"}],
        ) from None

    errors = []
    sent_at = parse_time(body.get("sent_at"))
    if sent_at is None:
        errors.append({"field": "sent_at", "error": "an RFC 3339 date-time with offset"})
    samples = body.get("samples")
    if not isinstance(samples, list):
        errors.append({"field": "samples", "error": "a list of samples"})
    gpus = body.get("gpus", [])
    if gpus is None:
        gpus = []
    if not isinstance(gpus, list):
        errors.append({"field": "gpus", "error": "a list of GPUs"})
    if errors:
        raise Refused(400, "validation_failed", "The batch has invalid fields.", errors)
    if len(samples) > settings.TELEMETRY_MAX_SAMPLES or len(gpus) > MAX_INVENTORY:
        raise Refused(
            413,
            "batch_too_large",
            f"A batch holds at most {settings.TELEMETRY_MAX_SAMPLES} samples "
            f"and {MAX_INVENTORY} GPUs.",
        )
    return batch_id, sent_at, samples, gpus


def _named_gpus(samples: list) -> set[str]:
    return {
        s["gpu_uuid"] for s in samples if isinstance(s, dict) and isinstance(s.get("gpu_uuid"), str)
    }


def _batch(
    node_id: int,
    batch_id: uuid.UUID,
    sent_at: datetime,
    now: datetime,
    samples: list,
    inventory: Inventory,
    gpu_rejections: list,
) -> NewBatch:
    """The batch row for a report: its accepted samples and the answer the agent gets."""
    accepted, rejected, seen, implausible = [], [], set(), {}
    window = accepted_window(now)
    for index, item in enumerate(samples):
        sample, error, why = validate_sample(item, inventory, window)
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


def accept(
    node: Node, body: dict, now: datetime | None = None, gpu_rows: list[tuple] | None = None
) -> Outcome:
    """Validate and store one telemetry request of `node`; the caller enqueues on commit.

    `gpu_rows`: the node's GPUs if already read (see `authenticate`).
    """
    now = now or timezone.now()
    batch_id, sent_at, samples, gpus = _fields(body)
    if gpu_rows is None:
        known = list(node.gpus.all())
    else:
        known = [GPU.from_db(connection.alias, GPU_COLUMNS, row) for row in gpu_rows]
    if gpus:
        gpu_rejections, inventory = register_gpus(node, gpus, now, known)
    else:
        gpu_rejections, inventory = [], Inventory.of_rows(known)
    named = {plausible.normal_uuid(u) or u for u in _named_gpus(samples)}
    unknown = {u for u in named if u not in inventory.gpus}
    if unknown:
        foreign = set(
            GPU.objects.filter(uuid__in=unknown).exclude(node=node).values_list("uuid", flat=True)
        )
        if foreign - inventory.foreign:
            flag_foreign_gpus(node, foreign - inventory.foreign, now)
        inventory.foreign |= foreign

    batch = _batch(node.pk, batch_id, sent_at, now, samples, inventory, gpu_rejections)
    batch.pk = insert_once(batch)
    if batch.pk is None:
        # A replay (or the same batch racing in on another connection): the first answer.
        first = TelemetryBatch.objects.values("response").get(node=node, batch_id=batch_id)
        return Outcome(200, first["response"])
    flag_implausible(node.pk, batch.implausible, now)
    return Outcome(
        202, batch.response, batch=batch, enqueue=bool(batch.sample_count), gpus=inventory.gpus
    )


def flag_implausible(node_id: int, found: dict[int, str], now: datetime) -> None:
    """Open (or renew) an `implausible_telemetry` flag on each GPU whose own node reported
    what no hardware produces; the flag holds the GPU out of rewards until an admin clears it.
    Only a GPU's own node gets here: a uuid of another node never reaches the limits."""
    for gpu_id, why in found.items():
        open_flags = GpuFlag.objects.filter(
            gpu_id=gpu_id,
            reason=GpuFlag.Reason.IMPLAUSIBLE_TELEMETRY,
            reported_by_id=node_id,
            cleared_at__isnull=True,
        )
        if open_flags.update(last_seen_at=now):
            continue
        try:
            with transaction.atomic():
                GpuFlag.objects.create(
                    gpu_id=gpu_id,
                    reason=GpuFlag.Reason.IMPLAUSIBLE_TELEMETRY,
                    reported_by_id=node_id,
                    detail=f"Its node reported {why}."[:1000],
                    created_at=now,
                    last_seen_at=now,
                )
        except IntegrityError:
            pass  # a concurrent report opened the same flag


def inventory_fingerprint(gpus: list) -> str:
    """The same inventory, sent again, gives the same fingerprint."""
    text = json.dumps(gpus, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class KnownAgent:
    """What the shared cache remembers of a token that authenticated: its node, its GPUs and
    the fingerprint of the inventory it last sent that changed nothing.

    Enough to take the usual report (samples of known GPUs, no inventory or the same one again)
    without reading the node: the INSERT itself checks, in the same statement, that the token
    is still the node's, the node is not revoked and every GPU is still the node's. So a cached
    entry can be stale without harm: the report then takes the full path, which reads the
    database. Entries live TTL_S, so an inventory is registered in full at least that often.
    """

    node_id: int
    gpus: dict[str, plausible.GpuLimits]
    inventory: str = ""

    CACHE_KEY = "agent:{digest}"
    TTL_S = 600

    def dumps(self) -> str:
        gpus = {uuid: limits.as_list() for uuid, limits in self.gpus.items()}
        return json.dumps({"node": self.node_id, "lim": gpus, "inv": self.inventory})

    @classmethod
    def loads(cls, text: str | None) -> "KnownAgent | None":
        """The entry, or None for none (or one written in an older shape: the full path then
        writes it anew)."""
        if not text:
            return None
        try:
            value = json.loads(text)
            gpus = {u: plausible.GpuLimits.from_list(v) for u, v in value["lim"].items()}
            return cls(int(value["node"]), gpus, str(value.get("inv", "")))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def accept_known(
    known: KnownAgent, token_digest: str, body: dict, now: datetime | None = None
) -> Outcome | None:
    """The usual report of a remembered agent, with one statement; None if it needs the full
    path (`accept` after `authenticate`): a new inventory, a GPU the entry does not know, a
    body to refuse, a replay, or a token, node or GPU that is no longer what the entry says."""
    now = now or timezone.now()
    try:
        batch_id, sent_at, samples, gpus = _fields(body)
    except Refused:
        return None  # answered by the full path, which first says whether the token is valid
    if gpus and (not known.inventory or inventory_fingerprint(gpus) != known.inventory):
        return None
    if not _named_gpus(samples) <= known.gpus.keys():
        return None
    inventory = Inventory(gpus=known.gpus)
    batch = _batch(known.node_id, batch_id, sent_at, now, samples, inventory, [])
    gpu_ids = sorted({sample[0] for sample in batch.samples})
    batch.pk = insert_once(batch, guard=(token_digest, gpu_ids))
    if batch.pk is None:
        return None
    flag_implausible(known.node_id, batch.implausible, now)
    return Outcome(202, batch.response, batch=batch, enqueue=bool(batch.sample_count))


def insert_once(batch: NewBatch, guard: tuple[str, list[int]] | None = None) -> int | None:
    """INSERT the batch unless (node, batch_id) exists; its id, or None for a replay.

    One statement in autocommit (no savepoint, no separate existence check): the unique
    constraint decides, which also settles two copies racing in at once. With `guard`
    (token digest, GPU ids) it also inserts nothing unless the node still holds that token, is
    not revoked, and owns those GPUs.
    """
    q = connection.ops.quote_name
    names = [
        "node_id", "batch_id", "received_at", "sent_at", "clock_skew_s", "samples",
        "sample_count", "response", "status", "attempts", "processed_at", "error",
    ]  # fmt: skip
    values = batch.values()
    source = f"VALUES ({', '.join(['%s'] * len(names))})"
    if guard is not None:
        digest, gpu_ids = guard
        node_table, gpu_table = q(Node._meta.db_table), q(GPU._meta.db_table)
        owned = ", ".join(["%s"] * len(gpu_ids)) or "NULL"
        source = (
            f"SELECT {', '.join(['%s'] * len(names))} WHERE EXISTS ("  # noqa: S608
            f"SELECT 1 FROM {node_table} WHERE id = %s AND token_hash = %s "
            "AND revoked_at IS NULL) "
            f"AND (SELECT count(*) FROM {gpu_table} WHERE node_id = %s AND id IN ({owned})) = %s"
        )
        values += [batch.node_id, digest, batch.node_id, *gpu_ids, len(gpu_ids)]
    sql = (
        f"INSERT INTO {q(TelemetryBatch._meta.db_table)} ({', '.join(q(n) for n in names)}) "
        f"{source} "
        f"ON CONFLICT ({q('node_id')}, {q('batch_id')}) DO NOTHING RETURNING {q('id')}"
    )
    rows = db.fetch(sql, values)
    return rows[0][0] if rows else None
