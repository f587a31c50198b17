"""A node's GPU inventory: registering what an agent reports, within what is physically
possible, and the rules for a uuid that another node already has (DESIGN.md "GPU identity").

A GPU uuid is not a secret (`nvidia-smi -L` prints it), so naming one proves nothing and must
never hurt its owner: the GPU keeps its node and keeps earning, the reporting node's samples for
it are refused one by one, and one `NodeFlag` on the reporting node tells the admins. The one
exception is a machine re-installed: a new node of the same contributor takes over a GPU whose
node is revoked or has been offline longer than GPU_MOVE_AFTER_OFFLINE_S, history included.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q

from contributors import plausible
from contributors.models import GPU, Node, NodeFlag

MAX_INVENTORY = 256
MAX_NAME_LEN = 200


@dataclass
class Inventory:
    """The node's GPUs by uuid (`gpus`: what their samples must stay within; `own`, the model
    rows, once registering needs them) and the uuids found to belong to other nodes."""

    gpus: dict[str, plausible.GpuLimits] = field(default_factory=dict)
    own: dict[str, GPU] = field(default_factory=dict)
    foreign: set[str] = field(default_factory=set)

    @property
    def ids(self) -> dict[str, int]:
        return {uuid: limits.id for uuid, limits in self.gpus.items()}

    @classmethod
    def of_rows(cls, rows: list[GPU]) -> "Inventory":
        """The limits of `rows`, one node's GPUs (MIG links are read from the rows)."""
        parents = {g.mig_parent_id for g in rows if g.mig_parent_id}
        gpus = {
            g.uuid: plausible.GpuLimits.of(
                g.pk, g.name, g.memory_total_mib, g.unrated, g.pk in parents
            )
            for g in rows
        }
        return cls(gpus=gpus, own={g.uuid: g for g in rows})


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_gpu(item) -> tuple[dict | None, list[dict]]:
    """A GPU inventory entry normalised, or the field errors that refuse it."""
    if not isinstance(item, dict):
        return None, [{"field": "", "error": "must be an object"}]
    errors = []
    uuid_ = plausible.normal_uuid(item.get("uuid"))
    if uuid_ is None:
        errors.append({"field": "uuid", "error": plausible.UUID_FORMS_TEXT})
    name = item.get("name")
    if (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > MAX_NAME_LEN
        or not name.isprintable()
    ):
        errors.append({"field": "name", "error": "required, printable, at most 200 characters"})
    total = item.get("memory_total_mib")
    if not _is_int(total) or not 0 < total <= plausible.MAX_MEMORY_MIB:
        errors.append({"field": "memory_total_mib", "error": "a positive integer of MiB"})
    extras = {}
    for key, limit in (("driver_version", 50), ("pci_bus_id", 50)):
        value = item.get(key)
        if value is not None and (
            not isinstance(value, str) or len(value) > limit or not value.isprintable()
        ):
            errors.append({"field": key, "error": f"printable, at most {limit} characters"})
        extras[key] = value or ""
    parent = item.get("mig_parent_uuid")
    if parent is not None and plausible.normal_uuid(parent) is None:
        errors.append({"field": "mig_parent_uuid", "error": plausible.UUID_FORMS_TEXT})
    if errors:
        return None, errors
    return {
        "uuid": uuid_,
        "name": name.strip(),
        "memory_total_mib": total,
        "mig_parent_uuid": plausible.normal_uuid(parent) if parent is not None else None,
        **extras,
    }, []


def _movable_from(node: Node, now: datetime) -> Q:
    """GPUs of the same contributor's nodes that are revoked or offline long enough."""
    offline_since = now - timedelta(seconds=settings.GPU_MOVE_AFTER_OFFLINE_S)
    return (
        Q(node__owner_id=node.owner_id)
        & ~Q(node=node)
        & (
            Q(node__revoked_at__isnull=False)
            | Q(node__last_seen_at__lt=offline_since)
            | Q(node__last_seen_at__isnull=True, node__created_at__lt=offline_since)
        )
    )


def _move_here(node: Node, gpus: list[GPU]) -> None:
    """Move re-installed GPUs (and their MIG instances) to `node`, history and all: samples,
    rollups and ledger entries hang on the GPU, not the node."""
    ids = [g.pk for g in gpus]
    GPU.objects.filter(Q(pk__in=ids) | Q(mig_parent_id__in=ids)).update(node=node)
    for gpu in gpus:
        gpu.node_id = node.pk


def register_gpus(
    node: Node, gpus: list, now: datetime, known: list[GPU] | None = None
) -> tuple[list[dict], Inventory]:
    """Create or update this node's GPUs from an inventory; flag uuids another node owns.

    `known` is the node's GPUs if the caller already read them. Returns the per-GPU rejections
    and the node's inventory as it now stands. An inventory that changed nothing (the usual
    case) writes nothing and reads nothing more.
    """
    if known is None:
        known = list(node.gpus.all())
    own = {g.uuid: g for g in known}
    rejected, wanted = [], {}
    for index, item in enumerate(gpus):
        gpu, errors = validate_gpu(item)
        if gpu is None:
            rejected.append({"index": index, "error": "validation_failed", "errors": errors})
        else:
            wanted[gpu["uuid"]] = (index, gpu)

    new_uuids = [u for u in wanted if u not in own]
    foreign: set[str] = set()
    if new_uuids:
        elsewhere = GPU.objects.filter(uuid__in=new_uuids)
        movable = {g.uuid: g for g in elsewhere.filter(_movable_from(node, now))}
        foreign = set(elsewhere.values_list("uuid", flat=True)) - movable.keys()
        if movable:
            _move_here(node, list(movable.values()))
            own.update(movable)
    physical = sum(1 for u in own if plausible.is_physical(u))
    for uuid_, (index, gpu) in wanted.items():
        if uuid_ in foreign:
            rejected.append({"index": index, "error": "gpu_owned_by_other_node"})
            continue
        memory = plausible.registered_memory(gpu["name"], gpu["memory_total_mib"])
        if memory.error:
            rejected.append({"index": index, "error": memory.error})
            continue
        fields = {
            "name": gpu["name"],
            "memory_total_mib": memory.total_mib,
            "unrated": memory.unrated,
            "driver_version": gpu["driver_version"],
            "pci_bus_id": gpu["pci_bus_id"],
        }
        existing = own.get(uuid_)
        if existing is None:
            if plausible.is_physical(uuid_) and physical >= settings.MAX_GPUS_PER_NODE:
                rejected.append({"index": index, "error": "too_many_gpus"})
                continue
            try:
                with transaction.atomic():
                    own[uuid_] = GPU.objects.create(
                        node=node, uuid=uuid_, first_seen_at=now, **fields
                    )
            except IntegrityError:  # another node registered it a moment ago
                foreign.add(uuid_)
                rejected.append({"index": index, "error": "gpu_owned_by_other_node"})
                continue
            physical += plausible.is_physical(uuid_)
            continue
        changes = {k: v for k, v in fields.items() if getattr(existing, k) != v}
        committed = existing.committed_memory_mib
        if committed is not None and committed > memory.total_mib:
            # A smaller total than before: the commitment can never exceed what exists.
            changes["committed_memory_mib"] = memory.total_mib
        if changes:
            GPU.objects.filter(pk=existing.pk).update(**changes)
            for key, value in changes.items():
                setattr(existing, key, value)
    _link_mig_parents(own, wanted)
    if foreign:
        flag_foreign_gpus(node, foreign, now)
    inventory = Inventory.of_rows(list(own.values()))
    inventory.foreign = foreign
    return rejected, inventory


def _link_mig_parents(own: dict[str, GPU], wanted: dict) -> None:
    """Link MIG instances to their physical GPU: one level only, never a chain or a cycle.

    Rewards count an instance's work for its parent and hold out a disabled or flagged parent;
    a nested or circular link would let an instance earn past its parent's hold-out.
    """
    parents_named = {gpu["mig_parent_uuid"] for _, gpu in wanted.values() if gpu["mig_parent_uuid"]}
    has_instances = {g.mig_parent_id for g in own.values() if g.mig_parent_id}
    for uuid_, (_, gpu) in wanted.items():
        child = own.get(uuid_)
        parent = own.get(gpu["mig_parent_uuid"] or "")
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
    """Record, for admins, that `node` reported GPUs that belong to other nodes: one open
    flag per node, updated by every report that names them. The GPUs' owners are untouched."""
    for _ in range(2):  # a concurrent request may open the same flag between our two steps
        flag = NodeFlag.objects.filter(
            node=node, reason=NodeFlag.Reason.FOREIGN_GPU, cleared_at__isnull=True
        ).first()
        if flag is not None:
            known = list(flag.gpu_uuids)
            added = [u for u in sorted(uuids) if u not in known]
            NodeFlag.objects.filter(pk=flag.pk).update(
                reports=F("reports") + 1,
                last_seen_at=now,
                gpu_uuids=(known + added)[: NodeFlag.MAX_UUIDS],
            )
            return
        try:
            with transaction.atomic():
                NodeFlag.objects.create(
                    node=node,
                    reason=NodeFlag.Reason.FOREIGN_GPU,
                    gpu_uuids=sorted(uuids)[: NodeFlag.MAX_UUIDS],
                    detail=(
                        f"Node {node.pk} reported GPU uuids that belong to other nodes; its "
                        "samples for them were refused and their owners keep earning."
                    ),
                    created_at=now,
                    last_seen_at=now,
                )
            return
        except IntegrityError:
            continue
