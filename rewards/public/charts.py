"""Figures of the public pages, built from the stored figures by pure functions.

Built per request from plain data without plotly.py's validation (a few bars are cheap to send,
validating them is not); the layout they share was built and validated once. Amounts reach
plotly as exact decimal strings of OMNIT, names through `plotly_text`: a display name is the
contributor's own text, and plotly.js would read markup in it.
"""

import json
from functools import cache

import plotly.graph_objects as go

from portal.lib.figures import plotly_text
from portal.lib.times import parse_time
from rewards.charts import COMPUTE, IDLE
from rewards.display import omnit

REASON_COLORS = {
    "disabled": "#6b7280",
    "flagged": "#b91c1c",
    "unverified": "#d97706",
    "verification_failed": "#7c3aed",
    "probe_failed": "#0e7490",
}
# The leaderboard's chart shows the top of the board; the table below it shows all of it.
CHART_ROWS = 10


def _amount(wei) -> str:
    return omnit(int(wei), 6).replace(",", "")


@cache
def _layout_template() -> str:
    fig = go.Figure()
    fig.update_layout(
        height=320,
        margin={"l": 56, "r": 16, "t": 16, "b": 40},
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        font={"family": "system-ui, sans-serif", "size": 13, "color": "#14171f"},
        legend={"orientation": "h", "y": -0.2},
    )
    fig.update_xaxes(showgrid=False)
    fig.update_yaxes(gridcolor="#eceef2", rangemode="tozero")
    return json.dumps(fig.layout.to_plotly_json())


def _layout(**changes) -> dict:
    layout = json.loads(_layout_template())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key].update(value)
        else:
            layout[key] = value
    return layout


def _count_axis(most: int, **axis) -> dict:
    """An axis of GPU counts: whole numbers only, however few."""
    return {**axis, "tickformat": ",d", **({"dtick": 1} if most <= 8 else {})}


def _widths(epochs: list[dict]) -> list[float]:
    """Each epoch's bar, 80 % of its length in ms (a date axis measures in ms): without it,
    plotly sizes a lone bar as one millisecond."""
    return [
        0.8 * 1000 * (parse_time(e["end"]) - parse_time(e["start"])).total_seconds() for e in epochs
    ]


def epoch_payouts(epochs: list[dict]):
    """Stacked bars per recent epoch: what the compute and the idle pool paid, in OMNIT."""
    starts = [e["start"] for e in epochs]
    data = [
        {"type": "bar", "x": starts, "y": [_amount(e[f"{kind}_paid_wei"]) for e in epochs],
         "name": kind, "marker": {"color": color}, "width": _widths(epochs),
         "hovertemplate": f"%{{y}} OMNIT<extra>{kind}</extra>"}
        for kind, color in (("compute", COMPUTE), ("idle", IDLE))
    ]  # fmt: skip
    layout = _layout(
        barmode="stack",
        hovermode="x unified",
        xaxis={"type": "date"},
        # Amounts arrive as exact decimal strings: the axis must read them as numbers.
        yaxis={"title": {"text": "OMNIT paid"}, "type": "linear"},
    )
    return go.Figure(data=data, layout=layout, _validate=False)


def held_out(epochs: list[dict], labels: dict[str, str]):
    """Stacked bars per recent epoch: GPUs held out, one colour per reason (reasons that held
    nobody out are left out of the legend)."""
    starts = [e["start"] for e in epochs]
    data = [
        {"type": "bar", "x": starts, "y": [e["held_out"].get(reason, 0) for e in epochs],
         "name": plotly_text(labels.get(reason, reason)), "marker": {"color": color},
         "width": _widths(epochs), "hovertemplate": "%{y} GPUs<extra>%{fullData.name}</extra>"}
        for reason, color in REASON_COLORS.items()
        if any(e["held_out"].get(reason, 0) for e in epochs)
    ]  # fmt: skip
    layout = _layout(
        barmode="stack",
        hovermode="x unified",
        xaxis={"type": "date"},
        yaxis=_count_axis(
            max((sum(e["held_out"].values()) for e in epochs), default=0),
            title={"text": "GPUs held out"},
            type="linear",
            rangemode="tozero",
        ),
        legend={"orientation": "h", "y": -0.25},
    )
    return go.Figure(data=data, layout=layout, _validate=False)


def gpu_models(models: list[dict]):
    """Horizontal bars: online GPUs per model, the most common on top."""
    data = [
        {"type": "bar", "orientation": "h", "y": [plotly_text(m["model"]) for m in models],
         "x": [m["gpus"] for m in models], "marker": {"color": COMPUTE},
         "hovertemplate": "%{x} GPUs<extra></extra>"}
    ]  # fmt: skip
    layout = _layout(
        height=max(200, 60 + 28 * len(models)),
        margin={"l": 16, "r": 16, "t": 16, "b": 40},
        xaxis=_count_axis(
            max((m["gpus"] for m in models), default=0),
            title={"text": "GPUs online"},
            showgrid=True,
            gridcolor="#eceef2",
            rangemode="tozero",
        ),
        yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
        showlegend=False,
    )
    return go.Figure(data=data, layout=layout, _validate=False)


def leaderboard(rows: list[dict], board: str):
    """Horizontal bars of the board's top CHART_ROWS, rank 1 on top: OMNIT earned, or
    GPU-hours online for the uptime board."""
    top = rows[:CHART_ROWS]
    # "1. name": ranks make every label unique, so no two contributors share a bar.
    labels = [plotly_text(f"{row['rank']}. {row['name']}") for row in top]
    if board == "uptime":
        values = [round(row["online_s"] / 3600, 2) for row in top]
        axis, hover = "GPU-hours online", "%{x} GPU-hours<extra></extra>"
    else:
        values = [_amount(row[f"{board}_wei"]) for row in top]
        axis, hover = "OMNIT earned", "%{x} OMNIT<extra></extra>"
    data = [
        {"type": "bar", "orientation": "h", "y": labels, "x": values,
         "marker": {"color": IDLE if board in ("idle", "uptime") else COMPUTE},
         "hovertemplate": hover}
    ]  # fmt: skip
    layout = _layout(
        height=max(200, 60 + 28 * len(top)),
        margin={"l": 16, "r": 16, "t": 16, "b": 40},
        xaxis={"title": {"text": axis}, "type": "linear", "showgrid": True,
               "gridcolor": "#eceef2", "rangemode": "tozero"},
        yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
        showlegend=False,
    )  # fmt: skip
    return go.Figure(data=data, layout=layout, _validate=False)
