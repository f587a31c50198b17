"""A node's GPU inventory: registering what an agent reports within what a real GPU can be,
MIG links, and the rules for a uuid that another node already has (DESIGN.md "GPU identity").

A GPU uuid is not a secret (`nvidia-smi -L` prints it), so naming one proves nothing and must
never hurt its owner: the GPU keeps its node and keeps earning, the reporting node's samples for
it are refused one by one, and one `NodeFlag` on the reporting node tells the admins. The one
exception is a machine re-installed: a new node of the same contributor takes over a GPU whose
node is revoked or has been offline longer than GPU_MOVE_AFTER_OFFLINE_S, history included.

A lie that passes the checks here is bounded by them: a node cannot register a GPU larger than
its model ships with, and a sample cannot claim more memory than its GPU registered.
"""

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q

from contributors.models import GPU, GpuFlag, Node, NodeFlag
from contributors.telemetry.validation import is_physical, validate_gpu
from rewards.catalog import Catalog, Spec

# Drivers report a little less than the marketing size (an H100 80GB: 81559 MiB); this much
# above the largest variant is allowed before a size counts as impossible.
MEMORY_TOLERANCE = 0.02

_catalog: tuple[float, Catalog] | None = None
_CATALOG_TTL_S = 60.0


def catalog() -> Catalog:
    """The catalog, read at most once a minute per process (admins edit it rarely)."""
    global _catalog
    now = time.monotonic()
    if _catalog is None or now - _catalog[0] > _CATALOG_TTL_S:
        _catalog = (now, Catalog.load())
    return _catalog[1]


def forget_catalog() -> None:
    """Read the catalog again on next use (after it was replaced wholesale, as tests do)."""
    global _catalog
    _catalog = None


@dataclass(frozen=True)
class MemoryVerdict:
    total_mib: int  # what the GPU counts with
    unrated: bool
    error: str = ""


def registered_memory(name: str, reported_mib: int) -> MemoryVerdict:
    """The memory a GPU of model `name` reporting `reported_mib` registers with.

    A rated model must fit its largest variant; an unrated one is accepted, capped at
    GPU_UNRATED_MAX_MEMORY_MIB until an admin rates it."""
    spec = catalog().spec(name)
    if spec.pattern is None:
        return MemoryVerdict(min(reported_mib, settings.GPU_UNRATED_MAX_MEMORY_MIB), True)
    largest = spec.max_memory_mib
    if largest is not None and reported_mib > largest * (1 + MEMORY_TOLERANCE):
        return MemoryVerdict(reported_mib, False, "implausible_memory")
    return MemoryVerdict(reported_mib, False)


def max_power_w(spec: Spec) -> float | None:
    if spec.board_power_w is None:
        return None
    return spec.board_power_w * settings.TELEMETRY_POWER_FACTOR_PCT / 100


@dataclass(frozen=True)
class GpuLimits:
    """What a sample of one registered GPU must stay within; small enough for the cache."""

    id: int
    total_mib: int
    max_power_w: float | None
    reports_utilization: bool
    capped: bool  # unrated, its memory capped: larger sample totals are clamped, not flagged

    def as_list(self) -> list:
        return [self.id, self.total_mib, self.max_power_w, self.reports_utilization, self.capped]

    @classmethod
    def from_list(cls, value: list) -> "GpuLimits":
        id_, total, power, util, capped = value
        return cls(int(id_), int(total), None if power is None else float(power), bool(util),
                   bool(capped))  # fmt: skip

    @classmethod
    def of(cls, gpu: GPU, has_instances: bool) -> "GpuLimits":
        """A physical GPU in MIG mode reports no utilization of its own (NVML: not supported;
        nvidia-smi: [N/A], see the H100/H200 MIG captures): a number there did not come from
        the driver. Its instances may report one (DCGM's per-instance activity)."""
        return cls(
            id=gpu.pk,
            total_mib=gpu.memory_total_mib,
            max_power_w=max_power_w(catalog().spec(gpu.name)),
            reports_utilization=not has_instances,
            capped=gpu.unrated,
        )

    def implausibility(self, util, used: int, total: int, power) -> str:
        """Why a sample of this GPU cannot be real, or "" when it can."""
        if total > self.total_mib * (1 + MEMORY_TOLERANCE) and not self.capped:
            return f"memory total {total} MiB above the {self.total_mib} MiB it registered"
        if power is not None and self.max_power_w is not None and power > self.max_power_w:
            return f"power {power} W far above its model's board power"
        if util is not None and not self.reports_utilization:
            return "a utilization of its own while in MIG mode (the driver reports none)"
        return ""


@dataclass
class Inventory:
    """The node's GPUs by uuid (`gpus`: what their samples must stay within; `own`, the model
    rows, once registering needs them) and the uuids found to belong to other nodes."""

    gpus: dict[str, GpuLimits] = field(default_factory=dict)
    own: dict[str, GPU] = field(default_factory=dict)
    foreign: set[str] = field(default_factory=set)

    @classmethod
    def of_rows(cls, rows: list[GPU]) -> "Inventory":
        """The limits of `rows`, one node's GPUs (MIG links are read from the rows)."""
        parents = {g.mig_parent_id for g in rows if g.mig_parent_id}
        gpus = {g.uuid: GpuLimits.of(g, g.pk in parents) for g in rows}
        return cls(gpus=gpus, own={g.uuid: g for g in rows})

    def note_foreign(self, node: Node, uuids: set[str], now: datetime) -> None:
        """Samples name uuids this node does not have: those another node holds are refused
        as such, and flagged on this node the first time this report finds them."""
        foreign = set(
            GPU.objects.filter(uuid__in=uuids).exclude(node=node).values_list("uuid", flat=True)
        )
        if foreign - self.foreign:
            flag_foreign_gpus(node, foreign - self.foreign, now)
        self.foreign |= foreign


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


def _take_over(node: Node, uuids: list[str], own: dict[str, GPU], now: datetime) -> set[str]:
    """Of `uuids` (new to this node) that other nodes hold: move those of a re-installed
    machine here, their MIG instances and history with them (samples, rollups and ledger
    entries hang on the GPU, not the node); returns the others, which stay where they are."""
    if not uuids:
        return set()
    elsewhere = GPU.objects.filter(uuid__in=uuids)
    movable = {g.uuid: g for g in elsewhere.filter(_movable_from(node, now))}
    foreign = set(elsewhere.values_list("uuid", flat=True)) - movable.keys()
    if movable:
        ids = [g.pk for g in movable.values()]
        GPU.objects.filter(Q(pk__in=ids) | Q(mig_parent_id__in=ids)).update(node=node)
        for gpu in movable.values():
            gpu.node_id = node.pk
        own.update(movable)
    return foreign


def _update(existing: GPU, fields: dict) -> bool:
    """Write what changed; True when the hardware it claims changed (model, memory)."""
    changes = {k: v for k, v in fields.items() if getattr(existing, k) != v}
    claims = bool(changes.keys() & {"name", "memory_total_mib"})
    committed = existing.committed_memory_mib
    if committed is not None and committed > fields["memory_total_mib"]:
        # A smaller total than before: the commitment can never exceed what exists.
        changes["committed_memory_mib"] = fields["memory_total_mib"]
    if changes:
        GPU.objects.filter(pk=existing.pk).update(**changes)
        for key, value in changes.items():
            setattr(existing, key, value)
    return claims


def _create(node: Node, uuid_: str, fields: dict, now: datetime) -> GPU | None:
    """The new GPU, or None if another node registered the uuid a moment ago."""
    try:
        with transaction.atomic():
            return GPU.objects.create(node=node, uuid=uuid_, first_seen_at=now, **fields)
    except IntegrityError:
        return None


def _verdict(
    uuid_: str, gpu: dict, new: bool, foreign: set[str], physical: int
) -> tuple[str, MemoryVerdict | None]:
    """Why this node cannot register `gpu` ("" if it can), and the memory it would count."""
    if uuid_ in foreign:
        return "gpu_owned_by_other_node", None
    memory = registered_memory(gpu["name"], gpu["memory_total_mib"])
    if memory.error:
        return memory.error, memory
    if new and is_physical(uuid_) and physical >= settings.MAX_GPUS_PER_NODE:
        return "too_many_gpus", memory
    return "", memory


def register_gpus(
    node: Node, gpus: list, now: datetime, known: list[GPU] | None = None
) -> tuple[list[dict], Inventory]:
    """Create or update this node's GPUs from an inventory; flag uuids another node owns.

    `known` is the node's GPUs if the caller already read them. Returns the per-GPU rejections
    and the node's inventory as it now stands. An inventory that changed nothing (the usual
    case) writes nothing and reads nothing more.
    """
    own = {g.uuid: g for g in (list(node.gpus.all()) if known is None else known)}
    rejected, wanted = [], {}
    for index, item in enumerate(gpus):
        gpu, errors = validate_gpu(item)
        if gpu is None:
            rejected.append({"index": index, "error": "validation_failed", "errors": errors})
        else:
            wanted[gpu["uuid"]] = (index, gpu)

    before = set(own)
    foreign = _take_over(node, [u for u in wanted if u not in own], own, now)
    moved, new, changed = set(own) - before, [], []
    physical = sum(1 for u in own if is_physical(u))
    for uuid_, (index, gpu) in wanted.items():
        error, memory = _verdict(uuid_, gpu, uuid_ not in own, foreign, physical)
        if error:
            rejected.append({"index": index, "error": error})
            continue
        fields = {
            "name": gpu["name"],
            "memory_total_mib": memory.total_mib,
            "unrated": memory.unrated,
            "driver_version": gpu["driver_version"],
            "pci_bus_id": gpu["pci_bus_id"],
        }
        if uuid_ in own:
            if _update(own[uuid_], fields) or uuid_ in moved:
                changed.append(own[uuid_])
        elif created := _create(node, uuid_, fields, now):
            own[uuid_] = created
            new.append(created)
            physical += is_physical(uuid_)
        else:
            foreign.add(uuid_)
            rejected.append({"index": index, "error": "gpu_owned_by_other_node"})
    _link_mig_parents(own, wanted)
    if foreign:
        flag_foreign_gpus(node, foreign, now)
    if new or changed:
        from contributors.verification import challenges  # it reads this module's catalog

        challenges.issue_for_inventory(new, changed, now)
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
