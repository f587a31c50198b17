"""Verifiable epochs: every settled epoch publishes a manifest anyone can recompute to the wei.

The manifest holds the epoch, its policy, what each pool paid, and every GPU's inputs as
settlement recorded them (`RewardEntry.inputs`, `HeldOut`) with its amounts in wei. GPUs appear
under a pseudonym, `pseudonym(uuid)`: the first PSEUDONYM_HEX hex digits of an HMAC-SHA256 of
the uuid under MANIFEST_PSEUDONYM_KEY (or a key derived from SECRET_KEY), the same in every
epoch and unlinkable to the uuid without the key. Owners see their GPUs' pseudonyms on their
statement.

It is built from the ledger once, the first time it is asked for (`manifest_digest`, the API,
the statement) or by the `rewards.publish_epoch_manifests` task right after settlement, and
stored with its SHA-256 (`EpochManifest`): the bytes served and the digest shown never change.
Only what settlement wrote is in it; a correction added to the ledger later is not.

Its format is documented, and checked, by the standalone verifier `rewards/verify_epoch.py`
(the standard library only): `python rewards/verify_epoch.py manifest.json`.
"""

import csv
import hashlib
import io
import json
from fractions import Fraction

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.crypto import salted_hmac

from portal.lib.times import rfc3339, rfc3339_or_none
from rewards.catalog import MIB_PER_GIB
from rewards.models import Epoch, EpochManifest, HeldOut, RewardEntry
from rewards.settlement import US_PER_S
from rewards.usage import ONE_US
from rewards.wei import decimal_string, rounded_decimal

FORMAT = "omnitensor-epoch-manifest/1"
PSEUDONYM_HEX = 16  # 64 bits: no collision among any realistic number of GPUs
PSEUDONYM_SALT = "rewards.manifests.pseudonym"
# Averages are shown as settlement shows them: rounded half up to this many decimals.
AVERAGE_PLACES = 6
FORMULAS = {
    "compute_units": "utilization_pct_seconds / 100 * weight",
    "idle_units": "mib_seconds / mib_per_gib (GiB*s)",
    "amount_wei": (
        "floor(pool_wei * units / total_units) each, then the leftover wei one each by largest "
        "remainder, ties in the order of `gpus` (GPU uuid ascending); no units: nothing paid"
    ),
}


def pseudonym(uuid: str) -> str:
    """The GPU's name in every manifest: stable, and not reversible without the key."""
    secret = settings.MANIFEST_PSEUDONYM_KEY or settings.SECRET_KEY
    mac = salted_hmac(PSEUDONYM_SALT, uuid, secret=secret, algorithm="sha256")
    return mac.hexdigest()[:PSEUDONYM_HEX]


def canonical_bytes(manifest: dict) -> bytes:
    """The bytes that are stored, served and hashed: sorted keys, no spaces, ASCII."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


# --- building -------------------------------------------------------------------------------


def build(epoch: Epoch) -> dict:
    """The manifest of a settled epoch, from its ledger entries and held-out records."""
    gpus: dict[str, dict] = {}
    entries = (
        RewardEntry.objects.filter(epoch=epoch)
        .order_by()
        .values_list("gpu__uuid", "kind", "units", "amount_wei", "inputs")
    )
    for uuid, kind, units, amount, inputs in entries.iterator(chunk_size=5000):
        if not isinstance(inputs, dict) or "pool_wei" not in inputs:
            continue  # a correction written after settlement: not part of it
        row = gpus.setdefault(uuid, _gpu_row(uuid))
        if row["covered_seconds"] is None:
            row["covered_seconds"] = inputs.get("covered_seconds")
        if kind == RewardEntry.Kind.COMPUTE:
            row["compute"] = _compute_part(units, amount, inputs)
        else:
            row["idle"] = _idle_part(units, amount, inputs)
        row["amount_wei"] = str(int(row["amount_wei"]) + amount)
    held = HeldOut.objects.filter(epoch=epoch).order_by()
    for uuid, reason, covered in held.values_list("gpu__uuid", "reason", "covered_seconds"):
        gpus[uuid] = {**_gpu_row(uuid), "held_out": reason, "covered_seconds": covered}
    return {
        "format": FORMAT,
        "epoch": {
            "id": epoch.pk,
            "start": rfc3339(epoch.start),
            "end": rfc3339(epoch.end),
            "seconds": decimal_string(Fraction((epoch.end - epoch.start) // ONE_US, US_PER_S)),
            "settled_at": rfc3339_or_none(epoch.settled_at),
        },
        "policy": {
            "id": epoch.policy_id,
            "grace_s": epoch.grace_s,
            "max_gap_s": epoch.max_gap_s,
            "compute_pool_wei": str(epoch.compute_pool_wei),
            "idle_pool_wei": str(epoch.idle_pool_wei),
            "mib_per_gib": MIB_PER_GIB,
            "formulas": FORMULAS,
        },
        "pools": {
            "compute": _pool(
                epoch.compute_units, epoch.compute_paid_wei, epoch.compute_unallocated_wei
            ),
            "idle": _pool(epoch.idle_units, epoch.idle_paid_wei, epoch.idle_unallocated_wei),
        },
        "totals": {
            "gpus": epoch.gpu_count + epoch.held_out_count,
            "paid_gpus": epoch.gpu_count,
            "held_out_gpus": epoch.held_out_count,
            "paid_wei": str(epoch.compute_paid_wei + epoch.idle_paid_wei),
        },
        # Settlement breaks ties between equal remainders by GPU uuid: the list keeps that order.
        "gpus": [gpus[uuid] for uuid in sorted(gpus)],
    }


def _gpu_row(uuid: str) -> dict:
    return {
        "gpu": pseudonym(uuid),
        "held_out": None,
        "covered_seconds": None,
        "compute": None,
        "idle": None,
        "amount_wei": "0",
    }


def _pool(units: str, paid: int, unallocated: int) -> dict:
    return {"total_units": units, "paid_wei": str(paid), "unallocated_wei": str(unallocated)}


def _compute_part(units: str, amount: int, inputs: dict) -> dict:
    weight = inputs.get("weight")
    exact = inputs.get("utilization_pct_seconds")
    if exact is None:  # settled before entries kept the exact sum: units = sum / 100 * weight
        if weight is not None and Fraction(weight) != 0:
            exact = decimal_string(Fraction(units) * 100 / Fraction(weight))
        else:  # a zero weight made the units 0 whatever the sum was; the average says it
            average = Fraction(inputs.get("avg_utilization_pct") or 0)
            exact = decimal_string(average * Fraction(inputs["seconds"]))
    return {
        "busy_seconds": inputs["seconds"],
        "null_utilization_seconds": inputs.get("null_utilization_seconds", "0"),
        "utilization_pct_seconds": exact,
        "avg_utilization_pct": inputs.get("avg_utilization_pct"),
        "weight": weight,
        "units": units,
        "amount_wei": str(amount),
    }


def _idle_part(units: str, amount: int, inputs: dict) -> dict:
    mib_seconds = Fraction(units) * MIB_PER_GIB
    idle = Fraction(inputs["seconds"])
    return {
        "idle_seconds": inputs["seconds"],
        "committed_mib": inputs.get("committed_mib"),
        "mib_seconds": decimal_string(mib_seconds),
        "avg_available_mib": rounded_decimal(mib_seconds / idle, AVERAGE_PLACES) if idle else "0",
        "units": units,
        "amount_wei": str(amount),
    }


# --- publishing -----------------------------------------------------------------------------


def publish(epoch_id: int) -> EpochManifest | None:
    """The epoch's stored manifest, built and stored now if it is not yet; None when no settled
    epoch has that id. Safe to run twice or at once: the first stored one stays."""
    stored = EpochManifest.objects.filter(epoch_id=epoch_id).first()
    if stored is not None:
        return stored
    epoch = Epoch.objects.filter(pk=epoch_id, status=Epoch.Status.SETTLED).first()
    if epoch is None:
        return None
    body = canonical_bytes(build(epoch))
    try:
        with transaction.atomic():
            return EpochManifest.objects.create(
                epoch=epoch, sha256=hashlib.sha256(body).hexdigest(), body=body.decode("ascii")
            )
    except IntegrityError:  # published by another request or worker meanwhile
        return EpochManifest.objects.get(epoch_id=epoch_id)


def stored_digests(epoch_ids) -> dict[int, str]:
    """Epoch id → its manifest's SHA-256, for those published already: one query."""
    rows = EpochManifest.objects.filter(epoch_id__in=list(epoch_ids))
    return dict(rows.values_list("epoch_id", "sha256"))


def digests(epoch_ids) -> dict[int, str]:
    """Epoch id → its manifest's SHA-256, publishing those not published yet (for background
    work only: the beat task's figures; requests read `stored_digests`); unsettled or unknown
    epochs are left out."""
    ids = list(epoch_ids)
    found = stored_digests(ids)
    for epoch_id in ids:
        if epoch_id not in found and (manifest := publish(epoch_id)) is not None:
            found[epoch_id] = manifest.sha256
    return found


def manifest_digest(epoch: Epoch) -> str | None:
    """The hex SHA-256 of the epoch's manifest (None for an epoch not settled), published now if
    it was not yet: one query once it is."""
    return digests([epoch.pk]).get(epoch.pk)


def publish_missing(limit: int = 100) -> int:
    """Publish the manifests of up to `limit` settled epochs that have none, newest first."""
    missing = (
        Epoch.objects.filter(status=Epoch.Status.SETTLED, manifest__isnull=True)
        .order_by("-start")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(publish(pk) is not None for pk in list(missing))


# --- the CSV, for people --------------------------------------------------------------------

CSV_GPU_COLUMNS = [
    "gpu", "held_out", "covered_seconds", "busy_seconds", "null_utilization_seconds",
    "utilization_pct_seconds", "avg_utilization_pct", "weight", "compute_units", "compute_wei",
    "idle_seconds", "committed_mib", "mib_seconds", "avg_available_mib", "idle_units",
    "idle_wei", "amount_wei",
]  # fmt: skip
CSV_ROWS_PER_CHUNK = 2000


def _summary(manifest: dict, sha256: str) -> list[tuple[str, object]]:
    epoch, policy, pools, totals = (manifest[k] for k in ("epoch", "policy", "pools", "totals"))
    return [
        ("format", manifest["format"]),
        ("manifest_sha256", sha256),
        *((f"epoch_{key}", epoch[key]) for key in ("id", "start", "end", "seconds")),
        *((key, policy[key]) for key in ("grace_s", "max_gap_s", "mib_per_gib")),
        ("compute_pool_wei", policy["compute_pool_wei"]),
        *((f"compute_{key}", value) for key, value in pools["compute"].items()),
        ("idle_pool_wei", policy["idle_pool_wei"]),
        *((f"idle_{key}", value) for key, value in pools["idle"].items()),
        *((f"total_{key}", value) for key, value in totals.items()),
    ]


def _csv_row(gpu: dict) -> list:
    compute, idle = gpu["compute"] or {}, gpu["idle"] or {}
    return [
        gpu["gpu"], gpu["held_out"] or "", gpu["covered_seconds"] or "",
        compute.get("busy_seconds", ""), compute.get("null_utilization_seconds", ""),
        compute.get("utilization_pct_seconds", ""), compute.get("avg_utilization_pct", ""),
        compute.get("weight", ""), compute.get("units", ""), compute.get("amount_wei", ""),
        idle.get("idle_seconds", ""), idle.get("committed_mib", ""), idle.get("mib_seconds", ""),
        idle.get("avg_available_mib", ""), idle.get("units", ""), idle.get("amount_wei", ""),
        gpu["amount_wei"],
    ]  # fmt: skip


def csv_chunks(manifest: EpochManifest):
    """The manifest as a spreadsheet: `field,value` lines of the epoch, its policy, pools and
    totals, a blank line, then one line per GPU in the manifest's order."""
    data = json.loads(manifest.body)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["field", "value"])
    writer.writerows(_summary(data, manifest.sha256))
    writer.writerow([])
    writer.writerow(CSV_GPU_COLUMNS)
    gpus = data["gpus"]
    for first in range(0, max(len(gpus), 1), CSV_ROWS_PER_CHUNK):
        writer.writerows(_csv_row(gpu) for gpu in gpus[first : first + CSV_ROWS_PER_CHUNK])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
