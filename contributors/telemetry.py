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

from contributors import tokens
from contributors.models import GPU, GpuFlag, Node, TelemetryBatch
from portal import db
from portal.api_errors import Refused

log = logging.getLogger(__name__)

MAX_UUID_LEN = 96
MAX_JOB_ID_LEN = 128
MAX_INVENTORY = 256
# Bounds a real GPU stays within; anything outside is a broken sensor or a forged report.
MAX_MEMORY_MIB = 16 * 1024 * 1024
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
    gpu_ids: dict[str, int] | None = None  # the node's GPUs after the report (full path)


@dataclass
class _Inventory:
    """The node's GPUs by uuid (`ids` always; `own`, the model rows, once registering needs
    them) and uuids found to belong to other nodes."""

    ids: dict[str, int] = field(default_factory=dict)
    own: dict[str, GPU] = field(default_factory=dict)
    foreign: set[str] = field(default_factory=set)


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
     "mig_parent_id", "committed_memory_mib"},
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


def _clean_str(value, max_len: int) -> str | None:
    if not isinstance(value, str) or not value or len(value) > max_len:
        return None
    if any(c.isspace() or not c.isprintable() for c in value):
        return None
    return value


def validate_gpu(item) -> tuple[dict | None, list[dict]]:
    """A GPU inventory entry normalised, or the field errors that refuse it."""
    if not isinstance(item, dict):
        return None, [{"field": "", "error": "must be an object"}]
    errors = []
    uuid_ = _clean_str(item.get("uuid"), MAX_UUID_LEN)
    if uuid_ is None:
        errors.append({"field": "uuid", "error": "required, no spaces, at most 96 characters"})
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors.append({"field": "name", "error": "required, at most 200 characters"})
    total = item.get("memory_total_mib")
    if not _is_int(total) or not 0 < total <= MAX_MEMORY_MIB:
        errors.append({"field": "memory_total_mib", "error": "a positive integer of MiB"})
    extras = {}
    for key, limit in (("driver_version", 50), ("pci_bus_id", 50)):
        value = item.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            errors.append({"field": key, "error": f"a string of at most {limit} characters"})
        extras[key] = value or ""
    parent = item.get("mig_parent_uuid")
    if parent is not None and _clean_str(parent, MAX_UUID_LEN) is None:
        errors.append({"field": "mig_parent_uuid", "error": "a GPU uuid"})
    if errors:
        return None, errors
    return {
        "uuid": uuid_,
        "name": name.strip(),
        "memory_total_mib": total,
        "mig_parent_uuid": parent,
        **extras,
    }, []


def register_gpus(
    node: Node, gpus: list[dict], now: datetime, known: list[GPU] | None = None
) -> tuple[list[dict], _Inventory]:
    """Create or update this node's GPUs from an inventory; flag uuids another node owns.

    `known` is the node's GPUs if the caller already read them. Returns the per-GPU rejections
    and the node's inventory as it now stands. An inventory that changed nothing (the usual
    case: agents send it with every report round) writes nothing and reads nothing more.
    """
    if known is None:
        known = list(node.gpus.all())
    inventory = _Inventory(own={g.uuid: g for g in known})
    rejected = []
    wanted = {}
    for index, item in enumerate(gpus):
        gpu, errors = validate_gpu(item)
        if gpu is None:
            rejected.append({"index": index, "error": "validation_failed", "errors": errors})
        else:
            wanted[gpu["uuid"]] = (index, gpu)
    new_uuids = [u for u in wanted if u not in inventory.own]
    owners = (
        dict(GPU.objects.filter(uuid__in=new_uuids).values_list("uuid", "node_id"))
        if new_uuids
        else {}
    )
    for uuid_, (index, gpu) in wanted.items():
        if uuid_ in owners:
            inventory.foreign.add(uuid_)
            rejected.append({"index": index, "error": "gpu_owned_by_other_node"})
            continue
        existing = inventory.own.get(uuid_)
        if existing is None:
            try:
                with transaction.atomic():
                    inventory.own[uuid_] = GPU.objects.create(
                        node=node,
                        uuid=uuid_,
                        name=gpu["name"],
                        memory_total_mib=gpu["memory_total_mib"],
                        driver_version=gpu["driver_version"],
                        pci_bus_id=gpu["pci_bus_id"],
                        first_seen_at=now,
                    )
            except IntegrityError:  # another node registered it a moment ago
                inventory.foreign.add(uuid_)
                rejected.append({"index": index, "error": "gpu_owned_by_other_node"})
            continue
        changes = {
            key: gpu[key]
            for key in ("name", "memory_total_mib", "driver_version", "pci_bus_id")
            if getattr(existing, key) != gpu[key]
        }
        if changes:
            if (
                existing.committed_memory_mib is not None
                and existing.committed_memory_mib > gpu["memory_total_mib"]
            ):
                # A smaller total than before: the commitment can never exceed what exists.
                changes["committed_memory_mib"] = gpu["memory_total_mib"]
            GPU.objects.filter(pk=existing.pk).update(**changes)
            for key, value in changes.items():
                setattr(existing, key, value)
    _link_mig_parents(inventory, wanted)
    if inventory.foreign:
        flag_foreign_gpus(node, inventory.foreign, now)
    inventory.ids = {uuid_: gpu.pk for uuid_, gpu in inventory.own.items()}
    return rejected, inventory


def _link_mig_parents(inventory: _Inventory, wanted: dict) -> None:
    """Link MIG instances to their physical GPU: one level only, never a chain or a cycle.

    Rewards count an instance's work for its parent and hold out a disabled or flagged parent;
    a nested or circular link would let an instance earn past its parent's hold-out.
    """
    parents_named = {gpu["mig_parent_uuid"] for _, gpu in wanted.values() if gpu["mig_parent_uuid"]}
    has_instances = {g.mig_parent_id for g in inventory.own.values() if g.mig_parent_id}
    for uuid_, (_, gpu) in wanted.items():
        child = inventory.own.get(uuid_)
        parent = inventory.own.get(gpu["mig_parent_uuid"] or "")
        if child is None or parent is None or parent.pk in (child.pk, child.mig_parent_id):
            continue
        parent_is_instance = parent.mig_parent_id is not None or bool(
            wanted.get(parent.uuid, (None, {}))[1].get("mig_parent_uuid")
        )
        child_is_parent = uuid_ in parents_named or child.pk in has_instances
        if parent_is_instance or child_is_parent:
            continue
        GPU.objects.filter(pk=child.pk).update(mig_parent=parent)
        child.mig_parent_id = parent.pk
        has_instances.add(parent.pk)


def flag_foreign_gpus(node: Node, uuids: set[str], now: datetime) -> None:
    """Record, for admins, that `node` reported GPUs that belong to another node."""
    for gpu in GPU.objects.filter(uuid__in=uuids).exclude(node=node).select_related("node"):
        updated = GpuFlag.objects.filter(
            gpu=gpu,
            reason=GpuFlag.Reason.UUID_ON_TWO_NODES,
            reported_by=node,
            cleared_at__isnull=True,
        ).update(last_seen_at=now)
        if not updated:
            try:
                with transaction.atomic():
                    GpuFlag.objects.create(
                        gpu=gpu,
                        reason=GpuFlag.Reason.UUID_ON_TWO_NODES,
                        reported_by=node,
                        detail=(
                            f"Node {node.pk} ({node.name}) reported GPU {gpu.uuid}, which belongs "
                            f"to node {gpu.node_id} ({gpu.node.name})."
                        ),
                        created_at=now,
                        last_seen_at=now,
                    )
            except IntegrityError:
                pass  # a concurrent request opened the same flag


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


def validate_sample(
    item, inventory: _Inventory, window: tuple[datetime, datetime]
) -> tuple[list | None, str]:
    """A sample normalised for storage (`SAMPLE_FIELDS`), or the error code that refuses it."""
    if not isinstance(item, dict):
        return None, "validation_failed"
    uuid_ = item.get("gpu_uuid")
    ts = parse_time(item.get("ts"))
    used = item.get("memory_used_mib")
    total = item.get("memory_total_mib")
    if not isinstance(uuid_, str) or ts is None or not _is_int(used) or not _is_int(total):
        return None, "validation_failed"
    gpu_id = inventory.ids.get(uuid_)
    if gpu_id is None:
        if uuid_ in inventory.foreign:
            return None, "gpu_owned_by_other_node"
        return None, "unknown_gpu"
    if not window[0] <= ts <= window[1]:
        return None, "timestamp_out_of_window"
    if not (0 <= used <= MAX_MEMORY_MIB and 0 < total <= MAX_MEMORY_MIB):
        return None, "out_of_range"
    if used > total:
        return None, "memory_used_exceeds_total"
    util = item.get("utilization_gpu_pct")
    if util is not None and (not _is_number(util) or not 0 <= util <= 100):
        return None, "out_of_range"
    temperature = item.get("temperature_c")
    if temperature is not None and (
        not _is_number(temperature)
        or not TEMPERATURE_RANGE_C[0] <= temperature <= TEMPERATURE_RANGE_C[1]
    ):
        return None, "out_of_range"
    power = item.get("power_w")
    if power is not None and (
        not _is_number(power) or not POWER_RANGE_W[0] <= power <= POWER_RANGE_W[1]
    ):
        return None, "out_of_range"
    job_id = item.get("job_id")
    if job_id is not None and (not isinstance(job_id, str) or len(job_id) > MAX_JOB_ID_LEN):
        return None, "validation_failed"
    return [gpu_id, ts.isoformat(), util, used, total, temperature, power, job_id or ""], ""


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
    inventory: _Inventory,
    gpu_rejections: list,
) -> NewBatch:
    """The batch row for a report: its accepted samples and the answer the agent gets."""
    accepted, rejected, seen = [], [], set()
    window = accepted_window(now)
    for index, item in enumerate(samples):
        sample, error = validate_sample(item, inventory, window)
        if sample is None:
            rejected.append({"index": index, "error": error})
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
    )


def accept(
    node: Node, body: dict, now: datetime | None = None, gpu_rows: list[tuple] | None = None
) -> Outcome:
    """Validate and store one telemetry request of `node`; the caller enqueues on commit.

    `gpu_rows`: the node's GPUs if already read (see `authenticate`).
    """
    now = now or timezone.now()
    batch_id, sent_at, samples, gpus = _fields(body)
    if gpus:
        known = None
        if gpu_rows is not None:
            known = [GPU.from_db(connection.alias, GPU_COLUMNS, row) for row in gpu_rows]
        gpu_rejections, inventory = register_gpus(node, gpus, now, known)
    else:
        gpu_rejections = []
        if gpu_rows is None:
            inventory = _Inventory(ids=dict(node.gpus.values_list("uuid", "pk")))
        else:
            uuid_at, id_at = GPU_COLUMNS.index("uuid"), GPU_COLUMNS.index("id")
            inventory = _Inventory(ids={row[uuid_at]: row[id_at] for row in gpu_rows})
    unknown = {u for u in _named_gpus(samples) if u not in inventory.ids}
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
    return Outcome(
        202, batch.response, batch=batch, enqueue=bool(batch.sample_count), gpu_ids=inventory.ids
    )


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
    gpu_ids: dict[str, int]
    inventory: str = ""

    CACHE_KEY = "agent:{digest}"
    TTL_S = 600

    def dumps(self) -> str:
        return json.dumps({"node": self.node_id, "gpus": self.gpu_ids, "inv": self.inventory})

    @classmethod
    def loads(cls, text: str | None) -> "KnownAgent | None":
        if not text:
            return None
        try:
            value = json.loads(text)
            return cls(int(value["node"]), dict(value["gpus"]), str(value.get("inv", "")))
        except (ValueError, TypeError, KeyError):
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
    if not _named_gpus(samples) <= known.gpu_ids.keys():
        return None
    inventory = _Inventory(ids=known.gpu_ids)
    batch = _batch(known.node_id, batch_id, sent_at, now, samples, inventory, [])
    gpu_ids = sorted({sample[0] for sample in batch.samples})
    batch.pk = insert_once(batch, guard=(token_digest, gpu_ids))
    if batch.pk is None:
        return None
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
