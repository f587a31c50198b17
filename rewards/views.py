"""Pages of earnings: the statement (why each entry), daily charts, CSV exports (every entry
with its value at the epoch's price; the universal layout for tax tools), the estimate."""

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from rest_framework.request import Request

from contributors.models import GPU
from portal.lib.figures import embed
from portal.lib.times import rfc3339
from rewards import charts, ledger, manifests, tax
from rewards.api.entries import EpochPages
from rewards.display import omnit
from rewards.models import Epoch, GpuModel, HeldOut, RewardEntry
from rewards.prices import epoch_prices

# The statement shows at most STATEMENT_EPOCHS epochs a page, fewer for a contributor with many
# GPUs, so that a page has at most about STATEMENT_ROWS rows (one per GPU and epoch).
STATEMENT_EPOCHS = 24
STATEMENT_ROWS = 384


class StatementPages(EpochPages):
    """The statement's pages behind `?statement=`; a cursor we did not give out shows the
    newest page."""

    cursor_query_param = "statement"


def _relative(url: str | None) -> str | None:
    """The path and query of a link DRF built absolute (the page may be behind a proxy)."""
    if url is None:
        return None
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def statement_epochs(request, gpu_count: int) -> tuple[list[Epoch], StatementPages]:
    pages = StatementPages()
    pages.page_size = max(1, min(STATEMENT_EPOCHS, STATEMENT_ROWS // max(gpu_count, 1)))
    epochs = Epoch.objects.filter(status=Epoch.Status.SETTLED).only("pk", "start", "end")
    return pages.paginate_queryset(epochs, Request(request)), pages


def _explain(entry: RewardEntry) -> str:
    """The formula of an entry with its numbers filled in."""
    i = entry.inputs
    share = f"{i.get('units')} / {i.get('total_units')} of the pool of {omnit(int(i['pool_wei']))}"
    if entry.kind == RewardEntry.Kind.COMPUTE:
        units = (
            f"{i.get('seconds')} s busy × {i.get('avg_utilization_pct')} % × weight "
            f"{i.get('weight')} = {i.get('units')} compute units"
        )
    else:
        units = (
            f"{i.get('seconds')} s idle × min(committed, free) memory = "
            f"{i.get('gib_seconds')} GiB·s"
        )
    return f"{units}; {share} OMNIT → {omnit(entry.amount_wei, 6)} OMNIT"


def _nothing_reason(entries: dict, held: HeldOut | None) -> str:
    if held is not None:
        return f"held out: {held.get_reason_display()}" + (
            f" ({held.detail})" if held.detail else ""
        )
    if not entries:
        return "offline: no telemetry covered this epoch"
    compute, idle = entries.get("compute"), entries.get("idle")
    if compute is None and idle is not None and idle.amount_wei == 0:
        return "idle, but no committed memory was free"
    if compute is not None and compute.amount_wei == 0:
        null = compute.inputs.get("null_utilization_seconds")
        if null and null != "0":
            return f"utilization could not be read for {null} s (counted as 0)"
    return ""


@require_GET
@login_required
def rewards_page(request):
    now = timezone.now()
    days = 90 if request.GET.get("days") == "90" else 30
    since = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    series = ledger.daily_earnings(request.user, ledger.utc_day(since), days)
    figure = charts.daily_earnings(series)

    gpus = list(
        GPU.objects.filter(node__owner=request.user)
        .select_related("node", "mig_parent")
        .order_by("node__name", "node_id", "uuid")
    )
    epochs, pages = statement_epochs(request, len(gpus))
    entries = RewardEntry.objects.filter(contributor=request.user, epoch__in=epochs).order_by()
    held = HeldOut.objects.filter(contributor=request.user, epoch__in=epochs).order_by()
    by_key: dict = defaultdict(dict)
    for entry in entries:
        by_key[(entry.epoch_id, entry.gpu_id)][entry.kind] = entry
    held_by_key = {(h.epoch_id, h.gpu_id): h for h in held}
    # Each epoch's published manifest (the task after settlement publishes it; the links publish
    # it on demand) and the names the manifests give this contributor's own physical GPUs.
    digests = manifests.stored_digests(epoch.pk for epoch in epochs)
    pseudonyms = {gpu.pk: manifests.pseudonym(gpu.uuid) for gpu in gpus if not gpu.mig_parent_id}
    statement = []
    for epoch in epochs:
        rows = []
        for gpu in gpus:
            kinds = by_key.get((epoch.pk, gpu.pk), {})
            known = kinds or (epoch.pk, gpu.pk) in held_by_key
            if not known and gpu.first_seen_at >= epoch.end:
                continue  # not registered yet
            reason = _nothing_reason(kinds, held_by_key.get((epoch.pk, gpu.pk)))
            if not known and gpu.mig_parent_id:
                reason = (
                    f"a MIG instance: its work is paid to its physical GPU {gpu.mig_parent.uuid}"
                )
            rows.append(
                {
                    "gpu": gpu,
                    "entries": [{"entry": e, "formula": _explain(e)} for e in kinds.values()],
                    "total": sum(e.amount_wei for e in kinds.values()),
                    "reason": reason,
                    "pseudonym": pseudonyms.get(gpu.pk),
                }
            )
        statement.append(
            {
                "epoch": epoch,
                "rows": rows,
                "total": sum(r["total"] for r in rows),
                "sha256": digests.get(epoch.pk),
            }
        )
    return render(
        request,
        "rewards/rewards.html",
        {
            "days": days,
            "price_currency": settings.PRICE_CURRENCY,
            "tax_years": [now.year, now.year - 1],
            "figure": embed(figure),
            "statement": statement,
            "older_url": _relative(pages.get_next_link()),
            "newer_url": _relative(pages.get_previous_link()),
            "period_total": sum(c + i for _, c, i in series),
        },
    )


def _cell(text: str) -> str:
    """Agent-supplied text, never read as a formula by a spreadsheet."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


CSV_COLUMNS = [
    "epoch_start", "epoch_end", "gpu_uuid", "gpu_name", "node", "kind", "units", "amount_wei",
    "amount_omnit", "seconds", "avg_utilization_pct", "weight", "gib_seconds", "pool_wei", "share",
    # The entry's value (rewards.prices): the currency (PRICE_CURRENCY), the price of 1 OMNIT
    # when the epoch closed and when it was quoted, amount × price in cents (half-even); the
    # last three empty without a price, and value_note says why.
    "currency", "omnit_price", "price_at", "value", "value_note",
]  # fmt: skip


# The export reads the ledger a slice of epochs at a time (CSV_EPOCHS_PER_QUERY): each slice is
# one query on the (contributor, epoch) index, so memory stays flat and the first bytes leave
# at once however long the history. bench/pages measures the whole export of a heavy account.
CSV_EPOCHS_PER_QUERY = 168


_omnit_plain = tax.omnit_plain


def csv_lines(contributor, period=None):
    """The export's lines: a header, then every entry by epoch start, GPU uuid and kind; only
    epochs that closed within `period` when given (tax.export_period)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    gpus: dict[int, tuple[str, str, str]] = {}

    def learn(gpu_filter) -> None:
        rows = GPU.objects.filter(gpu_filter).values_list("pk", "uuid", "name", "node__name")
        gpus.update({pk: (_cell(u), _cell(name), _cell(node)) for pk, u, name, node in rows})

    learn(Q(node__owner=contributor))
    epochs = tax.settled_epochs(period)
    for first in range(0, len(epochs), CSV_EPOCHS_PER_QUERY):
        chunk = epochs[first : first + CSV_EPOCHS_PER_QUERY]
        times = {pk: (rfc3339(start), rfc3339(end)) for pk, start, end in chunk}
        rank = {pk: position for position, (pk, _, _) in enumerate(chunk)}
        entries = list(
            RewardEntry.objects.filter(contributor=contributor, epoch_id__in=times)
            .order_by()
            .values_list("epoch_id", "gpu_id", "kind", "units", "amount_wei", "inputs")
        )
        if not entries:
            continue
        missing = {e[1] for e in entries} - gpus.keys()
        if missing:  # a GPU that has left the contributor's nodes since it earned
            learn(Q(pk__in=missing))
        entries.sort(key=lambda e: (rank[e[0]], gpus[e[1]][0], e[2]))
        prices = epoch_prices({e[0] for e in entries})
        buffer.seek(0)
        buffer.truncate()
        for epoch_id, gpu_id, kind, units, amount, i in entries:
            price = prices[epoch_id]
            writer.writerow(
                [
                    *times[epoch_id], *gpus[gpu_id], kind, units, str(amount),
                    _omnit_plain(amount), i.get("seconds"), i.get("avg_utilization_pct"),
                    i.get("weight"), i.get("gib_seconds"), i.get("pool_wei"), i.get("share"),
                    price.currency, price.price, price.at, price.value(amount), price.note,
                ]
            )  # fmt: skip
        yield buffer.getvalue()


def _csv_download(request, lines, name: str):
    """A streamed CSV attachment of `lines(contributor, period)`; `?year=` picks a UTC year
    (anything else but a year answers 400; other parameters are ignored)."""
    try:
        period = tax.export_period(request.GET)
    except tax.BadPeriod as exc:
        return HttpResponseBadRequest(f"{exc}\n", content_type="text/plain; charset=utf-8")
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    year = f"-{period[0].year}" if period else ""
    response = StreamingHttpResponse(
        lines(request.user, period), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{name}{year}-{stamp}.csv"'
    return response


@require_GET
@login_required
def rewards_csv(request):
    """Every entry of the contributor, for accounting: wei exact, OMNIT with 18 decimals, and
    its value in PRICE_CURRENCY at the epoch's close."""
    return _csv_download(request, csv_lines, "omnitensor-rewards")


@require_GET
@login_required
def tax_csv(request):
    """Rewards per epoch and claim payments in the universal layout of tax tools (rewards.tax)."""
    return _csv_download(request, tax.universal_lines, "omnitensor-tax-universal")


def _fraction(raw: str, default: str, low: Fraction, high: Fraction) -> tuple[Fraction, str]:
    """A bounded number from a form field, or the default and a message saying why not."""
    text = (raw or default).strip()
    try:
        number = Decimal(text) if len(text) <= 32 else None
    except InvalidOperation:
        number = None
    # Reject infinities and absurd exponents before Fraction expands them into huge integers.
    if number is None or not number.is_finite() or not -12 <= number.adjusted() <= 12:
        return Fraction(Decimal(default)), f"{raw!r} is not a number"
    value = Fraction(number)
    if not low <= value <= high:
        return Fraction(Decimal(default)), f"must be between {low} and {high}"
    return value, ""


@require_GET
def estimate_page(request):
    """Public: what a GPU would earn at current network totals, with the formula shown."""
    from rewards.estimate import estimate

    models = list(GpuModel.objects.exclude(pattern="").order_by("-weight", "pattern"))
    model = request.GET.get("model") or (models[0].pattern if models else "")
    # The form offers the catalog's patterns; a typed name selects the one it matches exactly.
    model = next((m.pattern for m in models if m.pattern.lower() == model.lower()), model)
    hours, hours_error = _fraction(request.GET.get("hours", ""), "24", Fraction(0), Fraction(24))
    util, util_error = _fraction(
        request.GET.get("utilization", ""), "60", Fraction(0), Fraction(100)
    )
    busy_share, busy_error = _fraction(
        request.GET.get("busy", ""), "50", Fraction(0), Fraction(100)
    )
    committed, committed_error = _fraction(
        request.GET.get("committed_gib", ""), "16", Fraction(0), Fraction(4096)
    )
    busy_hours = hours * busy_share / 100
    result = estimate(model, busy_hours, util, hours - busy_hours, committed)
    return render(
        request,
        "rewards/estimate.html",
        {
            "models": models,
            "model": model,
            "hours": request.GET.get("hours", "24"),
            "utilization": request.GET.get("utilization", "60"),
            "busy": request.GET.get("busy", "50"),
            "committed_gib": request.GET.get("committed_gib", "16"),
            # The form shows what was typed; the formula shows the numbers actually used.
            "used": {"utilization": float(util), "committed_gib": float(committed)},
            "errors": {
                "hours": hours_error,
                "utilization": util_error,
                "busy": busy_error,
                "committed_gib": committed_error,
            },
            "busy_hours": float(busy_hours),
            "idle_hours": float(hours - busy_hours),
            "result": result,
            "per_month_wei": result.total_wei * 30,
        },
    )
