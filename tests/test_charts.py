"""The figure functions are pure: plain data in, a plotly figure out. No HTTP, no database."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from contributors import charts
from portal.lib.times import rfc3339
from rewards import charts as reward_charts
from rewards.display import omnit

OMNIT = 10**18
T0 = "2025-03-01T10:00:00Z"


def at(seconds: int) -> str:
    """T0 plus `seconds`, as the UTC ISO string the views pass in."""
    return rfc3339(datetime(2025, 3, 1, 10, tzinfo=UTC) + timedelta(seconds=seconds))


def point(seconds: int, util=50.0, mem=1000, temp=60.0, power=200.0) -> dict:
    return {
        "t": at(seconds),
        "utilization_gpu_pct": util,
        "memory_used_mib": mem,
        "temperature_c": temp,
        "power_w": power,
    }


# --- live utilization ---------------------------------------------------------------------------


def test_live_utilization_has_one_line_per_gpu_tagged_with_its_uuid():
    fig = charts.live_utilization(
        [
            ("GPU-a", "rig-1 · NVIDIA L40S", [(at(0), 10.0), (at(10), None), (at(20), 30.0)]),
            ("GPU-b", "rig-2 · NVIDIA H100", []),
        ]
    )

    assert [t.type for t in fig.data] == ["scatter", "scatter"]
    first, second = fig.data
    assert (first.meta, first.name) == ("GPU-a", "rig-1 · NVIDIA L40S")
    assert list(first.x) == [at(0), at(10), at(20)]
    # A missing reading stays a hole in the line, never joined across.
    assert list(first.y) == [10.0, None, 30.0]
    assert first.connectgaps is False
    assert (second.meta, list(second.x), list(second.y)) == ("GPU-b", [], [])
    assert first.line.color != second.line.color
    assert tuple(fig.layout.yaxis.range) == (0, 100)
    assert fig.layout.xaxis.type == "date"


def test_live_utilization_without_gpus_is_an_empty_figure():
    fig = charts.live_utilization([])
    assert fig.data == ()
    assert json.loads(fig.to_json())["data"] == []


def test_live_utilization_colours_cycle_past_the_palette():
    series = [(f"GPU-{i}", f"gpu {i}", [(at(0), 1.0)]) for i in range(len(charts.PALETTE) + 2)]
    fig = charts.live_utilization(series)
    assert len(fig.data) == len(charts.PALETTE) + 2
    assert fig.data[len(charts.PALETTE)].line.color == charts.PALETTE[0]


# --- with_gaps and the GPU history -------------------------------------------------------------


def test_with_gaps_inserts_one_empty_point_in_the_middle_of_each_offline_stretch():
    points = [point(0), point(10), point(20), point(320), point(330), point(930)]

    out = charts.with_gaps(points, gap_s=30)

    assert [p["t"] for p in out] == [
        at(0), at(10), at(20), at(170), at(320), at(330), at(630), at(930),
    ]  # fmt: skip
    assert out[3] == {"t": at(170)}  # no readings: every series breaks there
    assert out[6] == {"t": at(630)}
    assert [p for p in out if len(p) > 1] == points  # the readings are untouched


def test_with_gaps_keeps_points_exactly_at_the_limit_joined():
    points = [point(0), point(30), point(61)]
    out = charts.with_gaps(points, gap_s=30)
    # 30 s apart stays joined; 31 s apart breaks, halfway between.
    assert [p["t"] for p in out] == [at(0), at(30), "2025-03-01T10:00:45.500000Z", at(61)]
    assert set(out[2]) == {"t"}
    assert charts.with_gaps([], gap_s=30) == []
    assert charts.with_gaps([point(0)], gap_s=30) == [point(0)]


def test_gpu_history_breaks_every_line_over_an_offline_gap():
    points = [point(0, util=10), point(10, util=20), point(600, util=30)]

    fig = charts.gpu_history(points, memory_total_mib=46068, gap_s=30)

    assert len(fig.data) == 4
    for trace in fig.data:
        assert list(trace.x) == [at(0), at(10), at(305), at(600)]
        assert list(trace.y)[2] is None
        assert trace.connectgaps is False
    util, memory, temperature, power = fig.data
    assert list(util.y) == [10, 20, None, 30]
    assert list(memory.y) == [1000, 1000, None, 1000]
    assert list(temperature.y) == [60.0, 60.0, None, 60.0]
    assert list(power.y) == [200.0, 200.0, None, 200.0]
    # One time axis, four rows: utilization 0-100 %, memory up to the GPU's total.
    assert [t.xaxis for t in fig.data] == ["x", "x2", "x3", "x4"]
    assert [t.yaxis for t in fig.data] == ["y", "y2", "y3", "y4"]
    assert tuple(fig.layout.yaxis.range) == (0, 100)
    assert tuple(fig.layout.yaxis2.range) == (0, 46068)
    assert fig.layout.xaxis2.matches == "x4" or fig.layout.xaxis.matches == "x4"


def test_gpu_history_without_gap_s_draws_the_points_as_they_are():
    points = [point(0), point(3600)]
    fig = charts.gpu_history(points, memory_total_mib=1000)
    assert list(fig.data[0].x) == [at(0), at(3600)]


def test_gpu_history_rollup_points_with_no_reading_are_holes():
    # A rollup minute that was online but held no sample has no averages.
    points = [point(0), {"t": at(60), "utilization_gpu_pct": None, "samples": 0}, point(120)]
    fig = charts.gpu_history(points, memory_total_mib=1000, gap_s=150)
    assert list(fig.data[0].y) == [50.0, None, 50.0]
    assert list(fig.data[1].y) == [1000, None, 1000]


def test_gpu_history_shades_rewarded_periods_across_all_rows_and_marks_jobs():
    periods = [(at(0), at(600), "compute"), (at(600), at(3600), "idle")]
    jobs = [(at(0), at(600), "job-7"), (at(1200), None, "job-8")]

    fig = charts.gpu_history([point(0)], memory_total_mib=1000, periods=periods, jobs=jobs)

    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) == 2  # one shape per period, spanning the four rows
    compute = [r for r in rects if r.fillcolor == charts.BUSY_FILL]
    idle = [r for r in rects if r.fillcolor == charts.IDLE_FILL]
    assert {(r.x0, r.x1) for r in compute} == {(at(0), at(600))}
    assert {(r.x0, r.x1) for r in idle} == {(at(600), at(3600))}
    assert {(r.xref, r.yref, r.y0, r.y1) for r in rects} == {("x", "paper", 0, 1)}
    assert all(r.layer == "below" for r in rects)
    assert rects[-1].fillcolor == charts.BUSY_FILL  # compute drawn over idle
    assert charts.BUSY_FILL != charts.IDLE_FILL

    lines = [s for s in fig.layout.shapes if s.type == "line"]
    # job-7: start and end marks; job-8 still runs: a start mark only. Each across all rows.
    assert sorted((s.x0, s.line.color) for s in lines) == sorted(
        [(at(0), "#1f4fd6"), (at(600), "#6b7280"), (at(1200), "#1f4fd6")]
    )
    assert {(s.yref, s.y0, s.y1) for s in lines} == {("paper", 0, 1)}
    notes = {a.text: a.x for a in fig.layout.annotations if a.text.startswith("job-")}
    assert notes == {"job-7": at(0), "job-8": at(1200)}


def test_adjacent_paid_epochs_shade_as_one_span():
    hours = [(at(3600 * h), at(3600 * (h + 1)), "idle") for h in range(24 * 30)]

    fig = charts.gpu_history([], memory_total_mib=1000, periods=hours)

    assert [(s.x0, s.x1) for s in fig.layout.shapes] == [(at(0), at(3600 * 24 * 30))]


@pytest.mark.parametrize("epochs", [10, 40, 80, 2000, 20_000])
def test_shapes_stay_bounded_whatever_the_history(epochs):
    """Every other epoch paid (no two adjacent): the worst case for merging."""
    paid = [(at(7200 * h), at(7200 * h + 3600), "idle") for h in range(epochs)]
    jobs = [(at(7200 * h + 3600), at(7200 * h + 3700), f"job-{h}") for h in range(epochs)]
    periods = paid + [(s, e, "compute") for s, e, _ in jobs]

    fig = charts.gpu_history([], memory_total_mib=1000, periods=periods, jobs=jobs)

    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(rects) <= charts.MAX_SPANS
    assert len(lines) <= 2 * charts.MAX_JOB_MARKS
    # Merging never loses time: the shaded spans still cover every paid epoch.
    idle = sorted((r.x0, r.x1) for r in rects if r.fillcolor == charts.IDLE_FILL)
    for start, end, _ in paid:
        assert any(x0 <= start and end <= x1 for x0, x1 in idle)


def test_gpu_history_without_data_is_still_a_figure_with_four_rows():
    fig = charts.gpu_history([], memory_total_mib=24564, gap_s=30)
    assert [list(t.x) for t in fig.data] == [[], [], [], []]
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["Utilization (%)", "Memory used (MiB)", "Temperature (°C)", "Power (W)"]


# --- uptime per day ----------------------------------------------------------------------------


def test_uptime_per_day_is_hours_online_on_a_0_to_24_axis():
    fig = charts.uptime_per_day([("2025-03-01", 43_200), ("2025-03-02", 86_400), ("2025-03-03", 0)])

    (bars,) = fig.data
    assert bars.type == "bar"
    assert list(bars.x) == ["2025-03-01", "2025-03-02", "2025-03-03"]
    assert list(bars.y) == [12.0, 24.0, 0.0]
    assert tuple(fig.layout.yaxis.range) == (0, 24)
    assert fig.layout.xaxis.type == "date"
    assert bars.width == 0.8 * 86_400_000  # most of a day wide on a millisecond date axis


def test_uptime_per_day_rounds_to_hundredths_of_an_hour():
    fig = charts.uptime_per_day([("2025-03-01", 100)])
    assert list(fig.data[0].y) == [0.03]
    assert charts.uptime_per_day([]).data[0].x in (None, ())


# --- daily earnings ----------------------------------------------------------------------------


def test_daily_earnings_are_stacked_bars_of_exact_decimal_strings():
    days = [
        ("2025-03-01", 1_234_567 * OMNIT + 123_456_789_000_000_001, 250 * OMNIT),
        ("2025-03-02", 0, 1),
        ("2025-03-03", 999_999_999_999, 5 * 10**17),
    ]

    fig = reward_charts.daily_earnings(days)

    compute, idle = fig.data
    assert (compute.type, compute.name, idle.type, idle.name) == ("bar", "compute", "bar", "idle")
    assert list(compute.x) == list(idle.x) == ["2025-03-01", "2025-03-02", "2025-03-03"]
    # Strings of OMNIT with six decimals, rounded down, no thousands separator.
    assert list(compute.y) == ["1234567.123456", "0.000000", "0.000000"]
    assert list(idle.y) == ["250.000000", "0.000000", "0.500000"]
    for value in [*compute.y, *idle.y]:
        assert isinstance(value, str) and "," not in value
    assert fig.layout.barmode == "stack"
    # The axis must read the strings as numbers, not as categories.
    assert fig.layout.yaxis.type == "linear"
    assert fig.layout.yaxis.rangemode == "tozero"
    assert fig.layout.xaxis.type == "date"


def test_daily_earnings_amounts_survive_the_json_the_page_embeds():
    wei = 98_765_432_109_876_543_210_987  # beyond what a float holds exactly
    body = json.loads(reward_charts.daily_earnings([("2025-03-01", wei, 0)]).to_json())
    assert body["data"][0]["y"] == [omnit(wei, 6).replace(",", "")] == ["98765.432109"]
    assert body["layout"]["yaxis"]["type"] == "linear"
    assert body["layout"]["barmode"] == "stack"


def test_daily_earnings_of_no_days():
    fig = reward_charts.daily_earnings([])
    assert [list(t.y) if t.y is not None else [] for t in fig.data] == [[], []]
