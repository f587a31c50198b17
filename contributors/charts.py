"""Figures of GPU telemetry, built from plain data by pure functions (no HTTP, no ORM).

Pages embed `figure.to_json()` and plotly.js draws it; times are UTC ISO strings that the
page turns into the browser's time zone before drawing.
"""

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from portal.lib.figures import plotly_text
from portal.lib.times import rfc3339

PALETTE = ("#1f4fd6", "#d97706", "#15803d", "#b91c1c", "#7c3aed", "#0e7490", "#be185d", "#4d7c0f")
BUSY_FILL = "rgba(31, 79, 214, 0.14)"
IDLE_FILL = "rgba(21, 128, 61, 0.10)"


def _layout(fig: go.Figure, *, height: int, title: str | None = None) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 56, "r": 16, "t": 40 if title else 16, "b": 40},
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        font={"family": "system-ui, sans-serif", "size": 13, "color": "#14171f"},
        legend={"orientation": "h", "y": -0.18},
        hovermode="x unified",
    )
    fig.update_xaxes(showgrid=True, gridcolor="#eceef2", type="date")
    fig.update_yaxes(showgrid=True, gridcolor="#eceef2", zeroline=False)
    return fig


def live_utilization(series: Sequence[tuple[str, str, Sequence[tuple[str, float | None]]]]):
    """One line per GPU: `series` is (uuid, label, [(iso time, utilization %)]) per GPU.

    Trace `meta` holds the uuid, so the page can extend each trace from /api/v1/me/gpus. The
    label is plain text (names come from agents) and shows as written, markup included.
    """
    data = [
        {"type": "scatter", "x": [t for t, _ in points], "y": [u for _, u in points],
         "name": plotly_text(label), "meta": uuid, "mode": "lines",
         "line": {"width": 2, "color": PALETTE[index % len(PALETTE)]}, "connectgaps": False,
         # The name by reference: a label spliced into the template would be read as one
         # (`%{...}` in a hostname would pull in other fields).
         "hovertemplate": "%{y:.0f} %<extra>%{fullData.name}</extra>"}
        for index, (uuid, label, points) in enumerate(series)
    ]  # fmt: skip
    # Plain data, not validated point by point (see gpu_history); the layout was, once.
    return go.Figure(data=data, layout=_live_layout(), _validate=False)


def _live_layout() -> dict:
    return json.loads(_live_template())


@cache
def _live_template() -> str:
    fig = go.Figure()
    fig.update_yaxes(title_text="GPU utilization (%)", range=[0, 100])
    return json.dumps(_layout(fig, height=340).layout.to_plotly_json())


def with_gaps(points: Sequence[dict], gap_s: float) -> list[dict]:
    """Insert an empty point where readings are further apart than `gap_s`, so an offline
    stretch shows as a break in the line instead of a straight line across it."""
    out: list[dict] = []
    previous = None
    for point in points:
        moment = datetime.fromisoformat(point["t"])
        if previous is not None and (moment - previous).total_seconds() > gap_s:
            middle = previous + (moment - previous) / 2
            out.append({"t": rfc3339(middle)})
        out.append(point)
        previous = moment
    return out


# Whatever the range and history, a chart draws at most this many shaded spans and job marks.
MAX_SPANS = 120
MAX_JOB_MARKS = 12


def merge_spans(periods: Iterable[tuple[str, str, str]], limit: int) -> list[tuple[str, str, str]]:
    """Spans of the same kind that touch (adjacent epochs) merged into one; past `limit`, the
    closest spans of a kind are merged across their gaps until at most `limit` remain (idle
    spans first: compute spans are the rarer and the more telling)."""
    by_kind: dict[str, list[list[str]]] = {}
    for start, end, kind in sorted(periods):
        spans = by_kind.setdefault(kind, [])
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])

    def count() -> int:
        return sum(len(v) for v in by_kind.values())

    for kind in sorted(by_kind, key=lambda k: k != "idle"):
        spans = by_kind[kind]
        while count() > limit and len(spans) > 1:
            gaps = sorted(
                range(len(spans) - 1),
                key=lambda i: (
                    datetime.fromisoformat(spans[i + 1][0]) - datetime.fromisoformat(spans[i][1])
                ),
            )
            # Merge the closest half of the gaps at once: a few passes, not one per span.
            merge = set(gaps[: max(1, min(len(gaps), count() - limit, len(gaps) // 2 or 1))])
            merged = [spans[0]]
            for i in range(1, len(spans)):
                if i - 1 in merge:
                    merged[-1][1] = max(merged[-1][1], spans[i][1])
                else:
                    merged.append(spans[i])
            by_kind[kind] = spans = merged
    # Idle first, so that compute spans are drawn over them.
    kinds = sorted(by_kind, key=lambda k: k == "compute")
    return [(s, e, kind) for kind in kinds for s, e in by_kind[kind]]


def gpu_history(
    points: Sequence[dict],
    *,
    memory_total_mib: int,
    gap_s: float | None = None,
    x_range: tuple[str, str] | None = None,
    periods: Iterable[tuple[str, str, str]] = (),
    jobs: Iterable[tuple[str, str | None, str]] = (),
):
    """Utilization, memory, temperature and power of one GPU, stacked on one time axis.

    `periods` are (start, end, "compute" | "idle") spans that earned rewards, shaded behind the
    lines; `jobs` are (start, end or None, job id) marks of attested jobs, the ids shown as
    plain text.
    """
    if gap_s:
        points = with_gaps(points, gap_s)
    times = [p["t"] for p in points]
    layout = _four_rows_layout()
    layout["yaxis"]["range"] = [0, 100]
    layout["yaxis2"]["range"] = [0, memory_total_mib]
    if x_range:  # the chosen range, even where the GPU has no data yet
        for axis in ("xaxis", "xaxis2", "xaxis3", "xaxis4"):
            layout[axis]["range"] = list(x_range)
    data = [
        {"type": "scatter", "x": times, "y": [p.get(key) for p in points], "name": name,
         "mode": "lines", "line": {"width": 2, "color": PALETTE[row]}, "connectgaps": False,
         "hovertemplate": hover + "<extra></extra>", "showlegend": False,
         "xaxis": f"x{row + 1}" if row else "x", "yaxis": f"y{row + 1}" if row else "y"}
        for row, (key, name, hover) in enumerate(HISTORY_ROWS)
    ]  # fmt: skip
    # Shapes go in as one list: plotly re-validates every shape on each add_vrect/add_vline,
    # which made a month of epochs take a minute. Each shape spans all four rows (paper y).
    shapes = [
        {"type": "rect", "xref": "x", "yref": "paper", "x0": start, "x1": end, "y0": 0, "y1": 1,
         "fillcolor": BUSY_FILL if kind == "compute" else IDLE_FILL, "line": {"width": 0},
         "layer": "below"}
        for start, end, kind in merge_spans(periods, MAX_SPANS)
    ]  # fmt: skip
    annotations = layout["annotations"]  # the subplot titles
    for start, end, job_id in list(jobs)[:MAX_JOB_MARKS]:
        for moment, color in ((start, "#1f4fd6"), (end, "#6b7280")):
            if moment:
                shapes.append(
                    {"type": "line", "xref": "x", "yref": "paper", "x0": moment, "x1": moment,
                     "y0": 0, "y1": 1, "line": {"color": color, "width": 1, "dash": "dot"}}
                )  # fmt: skip
        annotations.append(
            {"x": start, "y": 1.0, "xref": "x", "yref": "paper", "text": plotly_text(job_id),
             "showarrow": False, "font": {"size": 10}, "xanchor": "left", "yanchor": "bottom"}
        )  # fmt: skip
    if shapes:
        layout["shapes"] = shapes
    # Built from plain data without plotly.py's validation, which took most of the page's time
    # (4 × 720 points); the layout around it was built and validated once, below.
    return go.Figure(data=data, layout=layout, _validate=False)


HISTORY_ROWS = (
    ("utilization_gpu_pct", "utilization", "%{y:.0f} %"),
    ("memory_used_mib", "memory", "%{y:.0f} MiB"),
    ("temperature_c", "temperature", "%{y:.0f} °C"),
    ("power_w", "power", "%{y:.0f} W"),
)


@cache
def _four_rows_template() -> str:
    fig = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        subplot_titles=("Utilization (%)", "Memory used (MiB)", "Temperature (°C)", "Power (W)"),
    )
    _layout(fig, height=720)
    return json.dumps(fig.layout.to_plotly_json())


def _four_rows_layout() -> dict:
    """The history figure's layout (four rows on one time axis), a fresh copy each call."""
    return json.loads(_four_rows_template())


def uptime_per_day(days: Sequence[tuple[str, float]]):
    """Bars of online hours per day: `days` is (ISO date, online seconds)."""
    fig = go.Figure(
        go.Bar(
            x=[d for d, _ in days],
            y=[round(s / 3600, 2) for _, s in days],
            marker_color=PALETTE[2],
            hovertemplate="%{y:.1f} h online<extra>%{x}</extra>",
            name="online",
        )
    )
    fig.update_traces(width=0.8 * 86_400_000)  # bars a day wide (milliseconds on a date axis)
    fig.update_yaxes(title_text="hours online", range=[0, 24])
    _layout(fig, height=260)
    fig.update_xaxes(tickformat="%b %d", dtick=86_400_000)
    return fig
