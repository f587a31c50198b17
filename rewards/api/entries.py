"""What /api/v1/me/rewards lists: every ledger entry and held-out GPU of a contributor, explained,
for whole epochs, a page of epochs at a time behind opaque cursors."""

from datetime import timedelta

from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

from contributors.models import GPU
from portal.lib.errors import ApiError
from portal.lib.times import rfc3339_or_none
from rewards.models import Epoch, HeldOut, RewardEntry

# Every entry's inputs carry these, null where they do not apply to its kind.
EXPLAINED_INPUTS = ("seconds", "avg_utilization_pct", "weight", "gib_seconds")
# The kind of a held-out GPU's row, beside the ledger's own kinds (RewardEntry.Kind).
HELD_OUT = "held_out"


# /api/v1/me/rewards pages by epoch, newest first: a page holds every row of up to `limit`
# epochs, so an epoch is never split across pages and a page costs two indexed queries
# whatever the history (the ledger index is (contributor, epoch)).
REWARDS_PAGE_EPOCHS = 12
REWARDS_MAX_PAGE_EPOCHS = 24
REWARDS_DEFAULT_RANGE = timedelta(days=30)


class EpochPages(CursorPagination):
    """Opaque cursors over settled epochs, newest first (DRF's keyset pagination on the unique
    start). DRF checks a cursor's encoding; its position must also be a time, or the query
    would fail: `bad_cursor` says what any other cursor gets."""

    ordering = "-start"

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            return self.bad_cursor()
        if cursor and cursor.position and not is_time(cursor.position):
            return self.bad_cursor()
        return cursor

    def bad_cursor(self):
        return None  # the first page


class EpochCursor(EpochPages):
    """The API's pages: a cursor it did not give out is a 400."""

    page_size = REWARDS_PAGE_EPOCHS

    def bad_cursor(self):
        raise ApiError(
            400,
            "invalid_cursor",
            "cursor is not one this API gave out; follow `next` or `previous` as given.",
            [{"field": "cursor", "error": "a cursor from a previous page"}],
        )


def is_time(text: str) -> bool:
    try:
        return parse_datetime(text) is not None
    except ValueError:
        return False


def page_limit(request) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return REWARDS_PAGE_EPOCHS
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= REWARDS_MAX_PAGE_EPOCHS):
        raise ApiError(
            400,
            "validation_failed",
            f"limit must be a whole number of epochs from 1 to {REWARDS_MAX_PAGE_EPOCHS}.",
            [{"field": "limit", "error": f"1 to {REWARDS_MAX_PAGE_EPOCHS}"}],
        )
    return int(raw)


def reward_rows(contributor, epochs: list[Epoch]) -> list[dict]:
    """Every entry and held-out row of `contributor` in `epochs`, explained, newest first."""
    by_id = {epoch.pk: epoch for epoch in epochs}
    entries = list(
        RewardEntry.objects.filter(contributor=contributor, epoch_id__in=by_id)
        .order_by()
        .values_list("epoch_id", "gpu_id", "kind", "units", "amount_wei", "inputs")
    )
    held = list(
        HeldOut.objects.filter(contributor=contributor, epoch_id__in=by_id)
        .order_by()
        .values_list("epoch_id", "gpu_id", "reason", "detail", "covered_seconds")
    )
    gpu_ids = {row[1] for row in entries} | {row[1] for row in held}
    uuids = dict(GPU.objects.filter(pk__in=gpu_ids).values_list("pk", "uuid"))
    times = {pk: (rfc3339_or_none(e.start), rfc3339_or_none(e.end)) for pk, e in by_id.items()}
    rank = {pk: position for position, pk in enumerate(by_id)}  # the page's order
    rows = []
    for epoch_id, gpu_id, kind, units, amount, inputs in entries:
        start, end = times[epoch_id]
        rows.append(
            (
                (rank[epoch_id], uuids[gpu_id], kind),
                {
                    "epoch_start": start,
                    "epoch_end": end,
                    "gpu_uuid": uuids[gpu_id],
                    "kind": kind,
                    "units": units,
                    "amount_wei": str(amount),
                    "inputs": {**dict.fromkeys(EXPLAINED_INPUTS), **inputs},
                },
            )
        )
    for epoch_id, gpu_id, reason, detail, covered in held:
        start, end = times[epoch_id]
        rows.append(
            (
                (rank[epoch_id], uuids[gpu_id], HELD_OUT),
                {
                    "epoch_start": start,
                    "epoch_end": end,
                    "gpu_uuid": uuids[gpu_id],
                    "kind": HELD_OUT,
                    "reason": reason,
                    "detail": detail,
                    "units": "0",
                    "amount_wei": "0",
                    "inputs": {
                        "seconds": covered,
                        "avg_utilization_pct": None,
                        "weight": None,
                        "gib_seconds": None,
                    },
                },
            )
        )
    rows.sort(key=lambda keyed: keyed[0])
    return [row for _, row in rows]
