"""The site shell: the landing page explains the network; plotly.js comes from our static files."""

import hashlib
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

PLOTLY_JS = Path(__file__).resolve().parent.parent / "static" / "vendor" / "plotly-basic.min.js"


def test_landing_page_explains_both_rewards(client):
    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Compute rewards" in html
    assert "Idle rewards" in html
    assert 'lang="en"' in html
    assert 'name="viewport"' in html


def test_plotly_js_is_served_from_our_static_files(tmp_path):
    static_root = tmp_path / "static"
    with override_settings(STATIC_ROOT=static_root):
        call_command("collectstatic", interactive=False, verbosity=0)
        # A new client builds a new handler, so WhiteNoise indexes the new STATIC_ROOT.
        response = Client().get("/static/vendor/plotly-basic.min.js")

    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).digest() == hashlib.sha256(PLOTLY_JS.read_bytes()).digest()
    assert response["Content-Type"].startswith(("text/javascript", "application/javascript"))


def test_the_pages_plotly_js_is_the_version_plotly_py_writes_figures_for():
    """The pages load plotly.js's basic bundle (scatter and bar: all the charts draw, a quarter
    of the full bundle's size); the figures come from plotly.py, which pins its plotly.js."""
    from plotly.offline import get_plotlyjs_version

    header = PLOTLY_JS.read_text()[:200]
    assert re.search(r"plotly\.js \(basic - minified\) v(\S+)", header).group(1) == (
        get_plotlyjs_version()
    )


def test_every_chart_uses_a_trace_type_of_the_basic_bundle(client):
    from contributors import charts as gpu_charts
    from rewards import charts as reward_charts

    figures = [
        gpu_charts.live_utilization([("GPU-1", "a", [("2026-01-01T00:00:00Z", 1)])]),
        gpu_charts.gpu_history([], memory_total_mib=1),
        gpu_charts.uptime_per_day([("2026-01-01", 3600)]),
        reward_charts.daily_earnings([("2026-01-01", 1, 2)]),
    ]
    assert {trace.type for figure in figures for trace in figure.data} <= {"scatter", "bar"}


def test_no_page_loads_anything_from_a_cdn(client):
    html = client.get("/").content.decode()
    assert "cdn." not in html
    assert "https://" not in html.split("<body")[0]
