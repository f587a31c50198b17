"""The site shell: the landing page explains the network; plotly.js comes from our static files."""

import hashlib
from pathlib import Path

import plotly
import pytest
from django.core.management import call_command
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


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
        response = Client().get("/static/vendor/plotly.min.js")

    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).digest() == hashlib.sha256(PLOTLY_JS.read_bytes()).digest()
    assert response["Content-Type"].startswith(("text/javascript", "application/javascript"))


def test_no_page_loads_anything_from_a_cdn(client):
    html = client.get("/").content.decode()
    assert "cdn." not in html
    assert "https://" not in html.split("<body")[0]
