"""Figures of earnings, built from plain data by pure functions.

Amounts reach plotly as exact decimal strings of OMNIT (plotly.js reads numeric strings as
numbers), so no float ever holds an amount on our side.
"""

from collections.abc import Sequence

import plotly.graph_objects as go

from rewards.display import omnit

COMPUTE = "#1f4fd6"
IDLE = "#15803d"


def _plain(wei: int) -> str:
    return omnit(wei, 6).replace(",", "")


def daily_earnings(days: Sequence[tuple[str, int, int]]):
    """Stacked bars per day: `days` is (ISO date, compute wei, idle wei)."""
    dates = [d for d, _, _ in days]
    fig = go.Figure(
        [
            go.Bar(x=dates, y=[_plain(c) for _, c, _ in days], name="compute",
                   marker_color=COMPUTE, hovertemplate="%{y} OMNIT<extra>compute</extra>"),
            go.Bar(x=dates, y=[_plain(i) for _, _, i in days], name="idle",
                   marker_color=IDLE, hovertemplate="%{y} OMNIT<extra>idle</extra>"),
        ]
    )  # fmt: skip
    fig.update_layout(
        barmode="stack",
        height=320,
        margin={"l": 56, "r": 16, "t": 16, "b": 40},
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        font={"family": "system-ui, sans-serif", "size": 13, "color": "#14171f"},
        legend={"orientation": "h", "y": -0.2},
        hovermode="x unified",
    )
    fig.update_xaxes(type="date", showgrid=False)
    # Amounts arrive as exact decimal strings: the axis must read them as numbers.
    fig.update_yaxes(title_text="OMNIT", gridcolor="#eceef2", rangemode="tozero", type="linear")
    return fig
