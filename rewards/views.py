"""Pages of earnings: the statement (why each entry), daily charts, CSV export, the estimate."""

import csv
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from django.contrib.auth.decorators import login_required
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from contributors.models import GPU
from portal.figures import embed
from portal.times import rfc3339
from rewards import charts, ledger
from rewards.display import omnit
from rewards.models import Epoch, GpuModel, HeldOut, RewardEntry

STATEMENT_EPOCHS = 24


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

    epochs = list(
        Epoch.objects.filter(status=Epoch.Status.SETTLED).order_by("-start")[:STATEMENT_EPOCHS]
    )
    gpus = list(
        GPU.objects.filter(node__owner=request.user)
        .select_related("node", "mig_parent")
        .order_by("node__name", "node_id", "uuid")
    )
    entries = RewardEntry.objects.filter(contributor=request.user, epoch__in=epochs).select_related(
        "gpu"
    )
    held = HeldOut.objects.filter(contributor=request.user, epoch__in=epochs)
    by_key: dict = defaultdict(dict)
    for entry in entries:
        by_key[(entry.epoch_id, entry.gpu_id)][entry.kind] = entry
    held_by_key = {(h.epoch_id, h.gpu_id): h for h in held}
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
                }
            )
        statement.append({"epoch": epoch, "rows": rows, "total": sum(r["total"] for r in rows)})
    return render(
        request,
        "rewards/rewards.html",
        {
            "days": days,
            "figure": embed(figure),
            "statement": statement,
            "period_total": sum(c + i for _, c, i in series),
        },
    )


def _cell(text: str) -> str:
    """Agent-supplied text, never read as a formula by a spreadsheet."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Echo:
    def write(self, value):
        return value


CSV_COLUMNS = [
    "epoch_start", "epoch_end", "gpu_uuid", "gpu_name", "node", "kind", "units", "amount_wei",
    "amount_omnit", "seconds", "avg_utilization_pct", "weight", "gib_seconds", "pool_wei", "share",
]  # fmt: skip


@require_GET
@login_required
def rewards_csv(request):
    """Every entry of the contributor, for accounting: wei exact, OMNIT with 18 decimals."""
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(CSV_COLUMNS)
        entries = (
            RewardEntry.objects.filter(contributor=request.user)
            .select_related("epoch", "gpu__node")
            .order_by("epoch__start", "gpu__uuid", "kind")
        )
        for e in entries.iterator(chunk_size=2000):
            i = e.inputs
            yield writer.writerow(
                [
                    rfc3339(e.epoch.start),
                    rfc3339(e.epoch.end),
                    _cell(e.gpu.uuid), _cell(e.gpu.name), _cell(e.gpu.node.name), e.kind, e.units,
                    str(e.amount_wei),
                    omnit(e.amount_wei, 18).replace(",", ""), i.get("seconds"),
                    i.get("avg_utilization_pct"), i.get("weight"), i.get("gib_seconds"),
                    i.get("pool_wei"), i.get("share"),
                ]
            )  # fmt: skip

    stamp = datetime.now(UTC).strftime("%Y%m%d")
    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="omnitensor-rewards-{stamp}.csv"'
    return response


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
