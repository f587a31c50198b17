"""The network's public figures, computed set-based (a fixed number of queries whatever the
fleet's size) for the beat task to store: the fleet online now, the GPU models in it, what the
recent epochs paid, the GPUs they held out and why, and proof-of-GPU results of the last day.

Nothing here names a contributor, a machine or a GPU, and no text an agent chose is shown:
GPU models are named by the catalog row their name matches (an admin's text), not by the name
the agent reported.
"""

import importlib
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, F, IntegerField, Q, Sum, Value
from django.db.models.functions import Coalesce, Greatest, Least
from django.urls import NoReverseMatch, reverse

from contributors.models import GPU, Challenge, Node
from portal.lib.times import rfc3339
from rewards.catalog import Catalog
from rewards.models import Epoch, GpuModel, HeldOut

# Recent epochs: those the chart of payouts and the held-out figures cover.
RECENT_EPOCHS = 24
# GPU models listed one by one; the rest are counted together as OTHER_MODELS.
MODELS_SHOWN = 20
OTHER_MODELS = "other models"
UNRATED_MODELS = "models not yet rated"
VERIFICATION_WINDOW = timedelta(hours=24)
HELD_OUT_REASONS = HeldOut.Reason


def online_after(now: datetime) -> datetime:
    """Seen since then: online (3 report intervals, as `contributors.models.is_recent`)."""
    return now - timedelta(seconds=3 * settings.AGENT_REPORT_INTERVAL_S)


def online_gpus(now: datetime):
    """Physical GPUs in the network now: enabled, on a machine not revoked, seen recently.
    MIG instances count through their physical GPU, so memory is never counted twice."""
    return GPU.objects.filter(
        mig_parent__isnull=True,
        enabled=True,
        node__revoked_at__isnull=True,
        last_seen_at__gte=online_after(now),
    )


def _memory(now: datetime) -> dict:
    # Committed: what the owner offers (empty: all of it), never above the GPU's memory. Free:
    # the committed memory not in use at the last sample, as idle rewards count it
    # (min(committed, total − used)); a GPU whose use is unknown counts none free.
    total = Coalesce(F("last_memory_total_mib"), F("memory_total_mib"))
    committed = Least(
        Coalesce(F("committed_memory_mib"), F("memory_total_mib")), F("memory_total_mib")
    )
    free = Greatest(Value(0), Least(committed, total - Coalesce(F("last_memory_used_mib"), total)))
    row = online_gpus(now).aggregate(
        gpus=Count("id"),
        committed=Sum(committed, output_field=IntegerField()),
        free=Sum(free, output_field=IntegerField()),
    )
    machines = Node.objects.filter(
        revoked_at__isnull=True, last_seen_at__gte=online_after(now)
    ).count()
    return {
        "gpus": row["gpus"],
        "machines": machines,
        "committed_mib": int(row["committed"] or 0),
        "free_mib": int(row["free"] or 0),
    }


def _models(now: datetime) -> list[dict]:
    """Online GPUs per catalog model, most first (ties by name)."""
    rows = list(
        GpuModel.objects.values_list(
            "pattern", "weight", "memory_sizes_gib", "board_power_w", "int8_tops"
        )
    )
    catalog = Catalog(rows)
    spelled = {pattern.casefold(): pattern for pattern, *_ in rows}
    counts: dict[str, int] = {}
    names = online_gpus(now).values("name").annotate(n=Count("id")).order_by()
    for name, n in names.values_list("name", "n"):
        pattern = catalog.spec(name).pattern
        label = spelled.get(pattern, pattern) if pattern else UNRATED_MODELS
        counts[label] = counts.get(label, 0) + n
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = [{"model": label, "gpus": n} for label, n in ranked[:MODELS_SHOWN]]
    rest = sum(n for _, n in ranked[MODELS_SHOWN:])
    if rest:
        shown.append({"model": OTHER_MODELS, "gpus": rest})
    return shown


def _epochs() -> tuple[list[dict], list[dict], list[dict]]:
    """The recent settled epochs, oldest first, with what each pool paid and how many GPUs
    were held out per reason; the distinct GPUs held out per reason over all of them; and the
    epochs' rows as read."""
    epochs = list(
        Epoch.objects.filter(status=Epoch.Status.SETTLED)
        .order_by("-start")
        .values("pk", "start", "end", "compute_paid_wei", "idle_paid_wei", "gpu_count")[
            :RECENT_EPOCHS
        ]
    )[::-1]
    ids = [e["pk"] for e in epochs]
    held = HeldOut.objects.filter(epoch_id__in=ids).order_by()
    per_epoch: dict[int, dict[str, int]] = {pk: {} for pk in ids}
    for epoch_id, reason, n in (
        held.values("epoch_id", "reason")
        .annotate(n=Count("id"))
        .values_list("epoch_id", "reason", "n")
    ):
        per_epoch[epoch_id][reason] = n
    distinct = dict(
        held.values("reason").annotate(n=Count("gpu_id", distinct=True)).values_list("reason", "n")
    )
    rows = [
        {
            "start": rfc3339(e["start"]),
            "end": rfc3339(e["end"]),
            "compute_paid_wei": str(e["compute_paid_wei"]),
            "idle_paid_wei": str(e["idle_paid_wei"]),
            "gpus_paid": e["gpu_count"],
            "held_out": {r: per_epoch[e["pk"]].get(r, 0) for r in HELD_OUT_REASONS.values},
        }
        for e in epochs
    ]
    by_reason = [
        {"reason": reason.value, "label": reason.label, "gpus": distinct.get(reason.value, 0)}
        for reason in HELD_OUT_REASONS
    ]
    return rows, by_reason, epochs


def _verification(now: datetime) -> dict:
    since = now - VERIFICATION_WINDOW
    row = Challenge.objects.filter(decided_at__gte=since).aggregate(
        passed=Count("id", filter=Q(status=Challenge.Status.PASSED)),
        failed=Count("id", filter=Q(status=Challenge.Status.FAILED)),
    )
    decided = row["passed"] + row["failed"]
    return {
        "since": rfc3339(since),
        "passed": row["passed"],
        "failed": row["failed"],
        "pass_rate": round(row["passed"] / decided, 4) if decided else None,
        "enabled": bool(settings.GPU_VERIFICATION),
    }


# --- Epoch manifests ---------------------------------------------------------------------------
# MANIFEST SPOT: the SHA-256 of each recent epoch's manifest, beside what it paid, linked to the
# manifest itself. `rewards.manifests` (verifiable epochs) publishes them right after settlement;
# this reads what it stored, one query (`stored_digests`), or asks `manifest_digest(epoch)` per
# epoch where only that exists. Without that module the list stays empty and /network/ says
# the digests are not published yet.
MANIFEST_MODULE = "rewards.manifests"


def _manifest_module():
    try:
        return importlib.import_module(MANIFEST_MODULE)
    except ImportError:
        return None


def _manifest_url(epoch_id: int) -> str | None:
    try:
        return reverse("api-epoch-manifest-json", args=[epoch_id])
    except NoReverseMatch:
        return None


def _manifests(epochs: list[dict]) -> list[dict]:
    """{epoch_start, sha256, url} of the recent epochs whose manifest is published, newest
    first."""
    module = _manifest_module()
    if module is None or not epochs:
        return []
    ids = [e["pk"] for e in epochs]
    if hasattr(module, "stored_digests"):
        found = module.stored_digests(ids)
    elif hasattr(module, "manifest_digest"):
        by_id = {e.pk: e for e in Epoch.objects.filter(pk__in=ids)}
        found = {pk: module.manifest_digest(epoch) for pk, epoch in by_id.items()}
    else:
        return []
    return [
        {
            "epoch_start": rfc3339(e["start"]),
            "sha256": found[e["pk"]],
            "url": _manifest_url(e["pk"]),
        }
        for e in reversed(epochs)
        if found.get(e["pk"])
    ]


def compute(now: datetime) -> dict:
    """Every figure of /network/ and /api/v1/network as of `now`, ready to serve as JSON."""
    epochs, held_out, rows = _epochs()
    return {
        "computed_at": rfc3339(now),
        "online": {**_memory(now), "online_within_s": 3 * settings.AGENT_REPORT_INTERVAL_S},
        "models": _models(now),
        "epochs": epochs,
        "held_out": held_out,
        "verification": _verification(now),
        "manifests": _manifests(rows),
    }
