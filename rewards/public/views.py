"""The public pages, /network/ and /leaderboard/: no sign-in, and no query of their own (they
read what the beat task stored, `store`)."""

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from portal.lib.figures import embed
from rewards.models import HeldOut
from rewards.public import charts, leaderboard, store

PERIOD_NAMES = {"24h": "24 hours", "7d": "7 days", "30d": "30 days"}
BOARD_NAMES = {
    "total": "Total earnings",
    "compute": "Compute earnings",
    "idle": "Idle earnings",
    "uptime": "Uptime",
}


def memory_text(mib: int) -> str:
    """81559 → "79.6 GiB", 5000000 → "4.77 TiB"."""
    gib = mib / 1024
    if gib >= 1024:
        return f"{gib / 1024:,.2f} TiB"
    return f"{gib:,.1f} GiB"


def _computing(request, template: str, status: int = 200, **context) -> HttpResponse:
    return render(request, template, {"computing": True, **context}, status=status)


@require_GET
def network_page(request):
    figures = store.read(store.NETWORK_KEY)
    if figures is None:
        return _computing(request, "rewards/network.html")
    online = figures["online"]
    epochs = figures["epochs"]
    labels = dict(HeldOut.Reason.choices)
    verification = figures["verification"]
    rate = verification["pass_rate"]
    return render(
        request,
        "rewards/network.html",
        {
            "figures": figures,
            "online": online,
            "committed": memory_text(online["committed_mib"]),
            "free": memory_text(online["free_mib"]),
            "epochs": epochs,
            "paid_wei": sum(int(e["compute_paid_wei"]) + int(e["idle_paid_wei"]) for e in epochs),
            "held_out": figures["held_out"],
            "any_held_out": any(row["gpus"] for row in figures["held_out"]),
            "verification": verification,
            "pass_rate": None if rate is None else f"{100 * rate:.1f} %",
            "payouts_figure": embed(charts.epoch_payouts(epochs)),
            "held_out_figure": embed(charts.held_out(epochs, labels)),
            "models_figure": embed(charts.gpu_models(figures["models"])),
        },
    )


def board_choice(params) -> tuple[str, str, list[dict]]:
    """(period, board, errors) from query parameters; each error names its field."""
    period = params.get("period", leaderboard.DEFAULT_PERIOD)
    board = params.get("by", leaderboard.DEFAULT_BOARD)
    errors = []
    if period not in leaderboard.PERIODS:
        errors.append({"field": "period", "error": f"one of {', '.join(leaderboard.PERIODS)}"})
    if board not in leaderboard.BOARDS:
        errors.append({"field": "by", "error": f"one of {', '.join(leaderboard.BOARDS)}"})
    return period, board, errors


@require_GET
def leaderboard_page(request):
    period, board, errors = board_choice(request.GET)
    context = {
        "period": period,
        "board": board,
        "periods": PERIOD_NAMES,
        "boards": BOARD_NAMES,
        "size": leaderboard.BOARD_SIZE,
        "period_name": PERIOD_NAMES.get(period, ""),
        "board_name": BOARD_NAMES.get(board, ""),
        "max_gap_s": settings.COVERAGE_MAX_GAP_S,
    }
    if errors:
        return render(
            request, "rewards/leaderboard.html", {**context, "errors": errors}, status=400
        )
    boards = store.read(store.LEADERBOARD_KEY)
    if boards is None:
        return _computing(request, "rewards/leaderboard.html", **context)
    chosen = boards["periods"][period]
    rows = [store.public_row(row) for row in chosen["boards"][board]]
    for row in rows:
        row["online_hours"] = f"{row['online_s'] / 3600:,.1f}"
    return render(
        request,
        "rewards/leaderboard.html",
        {
            **context,
            "computed_at": boards["computed_at"],
            "since": chosen["since"],
            "rows": rows,
            "figure": embed(charts.leaderboard(rows, board)) if rows else None,
        },
    )
