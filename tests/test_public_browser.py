"""/network/ and /leaderboard/ in headless Chromium, signed out: every chart drawn, no console
errors, a display name with markup shown as text, and no sideways scrolling at phone width.

Data comes through the real agent and scheduler APIs and settlement (tests/support/accounts.py);
the figures from the beat task, run in-process.
"""

import pytest

from tests.support.accounts import small_account
from tests.support.public import CHART_DRAWN, run_beat_task
from tests.support.siwe import signed_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_catalog"),
]

NAME = "<b>Alice</b> & %{x}"
PAGES = {
    "network": ("/network/", "#models-chart, #payouts-chart, #held-out-chart"),
    "leaderboard": ("/leaderboard/?period=7d&by=total", "#leaderboard-chart"),
    "uptime": ("/leaderboard/?period=30d&by=uptime", "#leaderboard-chart"),
}


@pytest.fixture
def network(alice):
    account = small_account(alice)
    profile = {"display_name": NAME, "leaderboard": "name"}
    assert signed_in(alice).post("/wallets/profile", profile).status_code == 302
    run_beat_task()
    return account


@pytest.mark.parametrize("name", list(PAGES))
def test_each_public_page_draws_its_charts_without_console_errors(page, live_server, network, name):
    path, selector = PAGES[name]

    response = page.goto(f"{live_server.url}{path}")

    assert response.status == 200
    page.wait_for_function(CHART_DRAWN, arg=selector, timeout=10_000)
    for one in selector.split(", "):
        assert page.locator(f"{one} .main-svg").count() >= 1, one
    assert page.console_errors == []


def test_the_payouts_chart_reads_amounts_as_numbers_in_local_time(page, live_server, network):
    page.goto(f"{live_server.url}/network/")
    page.wait_for_function(CHART_DRAWN, arg="#payouts-chart")

    axes = page.evaluate(
        """() => { const el = document.getElementById("payouts-chart");
        return {x: el._fullLayout.xaxis.type, y: el._fullLayout.yaxis.type,
                max: el._fullLayout.yaxis.range[1], first: el.data[0].x[0]}; }"""
    )
    assert (axes["x"], axes["y"]) == ("date", "linear")
    assert axes["max"] >= 1000  # the compute pool of the settled epoch, on a numeric axis
    assert "Z" not in axes["first"]  # an epoch's start in the browser's time zone
    assert page.console_errors == []


def test_a_display_name_with_markup_reads_as_text(page, live_server, network):
    page.goto(f"{live_server.url}/leaderboard/")
    page.wait_for_function(CHART_DRAWN, arg="#leaderboard-chart")

    assert page.locator("#leaderboard-table [data-field=name]").first.inner_text() == NAME
    ticks = page.eval_on_selector_all(
        "#leaderboard-chart .ytick text", "els => els.map((el) => el.textContent)"
    )
    assert ticks == [f"1. {NAME}"]
    assert page.locator("#leaderboard-table b").count() == 0
    assert page.console_errors == []


def test_public_pages_fit_a_phone_without_horizontal_scrolling(chromium, live_server, network):
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        phone = context.new_page()
        errors = []
        phone.on("pageerror", lambda exc: errors.append(str(exc)))
        phone.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        for name, (path, selector) in PAGES.items():
            phone.goto(f"{live_server.url}{path}")
            phone.wait_for_function(CHART_DRAWN, arg=selector, timeout=10_000)
            width = phone.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 390, f"{name} scrolls sideways: {width} px"
        assert errors == []
    finally:
        context.close()
