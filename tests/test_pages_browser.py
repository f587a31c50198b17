"""The contributor's pages in headless Chromium: charts drawn with no console errors, the live
chart moving as batches arrive, local times, phone width and a basic accessibility check.

Data comes through the real agent and scheduler APIs (tests/support/accounts.py).
"""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from contributors.models import GPU
from tests.support.accounts import small_account
from tests.support.browser import SCREENSHOTS, sign_in
from tests.support.rewards import ingest_all, samples

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHART_DRAWN = """(selector) => {
  const charts = [...document.querySelectorAll(selector)];
  return charts.length > 0 && charts.every((el) => el.classList.contains("js-plotly-plot")
    && Array.isArray(el.data) && el.data.length > 0);
}"""


@pytest.fixture
def account(alice):
    return small_account(alice)


def pages_of(account) -> dict[str, tuple[str, str]]:
    """Page → (path, selector of the charts it must draw)."""
    return {
        "dashboard": ("/dashboard/", "#live-chart"),
        "gpu": (f"/gpus/{account.uuids[0]}/?range=24h", "#history-chart, #uptime-chart"),
        "gpu-1h": (f"/gpus/{account.uuids[0]}/?range=1h", "#history-chart"),
        "rewards": ("/rewards/?days=30", "#daily-chart"),
        "estimate": ("/estimate/", ""),
    }


@pytest.mark.parametrize("name", ["dashboard", "gpu", "gpu-1h", "rewards", "estimate"])
def test_each_page_draws_its_charts_without_console_errors(page, live_server, account, name):
    sign_in(page.context, live_server, account.owner)
    path, selector = pages_of(account)[name]

    response = page.goto(f"{live_server.url}{path}")

    assert response.status == 200
    if selector:
        page.wait_for_function(CHART_DRAWN, arg=selector, timeout=10_000)
        traces = page.eval_on_selector(selector.split(",")[0], "el => el.data.length")
        assert traces >= 1
        # Plotly drew SVG into the element: lines or bars, not an empty frame.
        assert page.locator(f"{selector.split(',')[0]} .main-svg").count() >= 1
    assert page.console_errors == []


def test_the_daily_chart_reads_the_amounts_as_numbers(page, live_server, account):
    sign_in(page.context, live_server, account.owner)
    page.goto(f"{live_server.url}/rewards/")
    page.wait_for_function(CHART_DRAWN, arg="#daily-chart")

    axis = page.evaluate(
        """() => { const el = document.getElementById("daily-chart");
        return {type: el._fullLayout.yaxis.type, max: el._fullLayout.yaxis.range[1]}; }"""
    )
    assert axis["type"] == "linear"
    assert axis["max"] >= 1000  # the compute pool of the one settled epoch, on a numeric axis
    assert page.console_errors == []


def test_the_live_chart_moves_when_a_new_batch_arrives(page, live_server, account, settings):
    settings.DASHBOARD_REFRESH_S = 1
    sign_in(page.context, live_server, account.owner)
    page.goto(f"{live_server.url}/dashboard/")
    page.wait_for_function(CHART_DRAWN, arg="#live-chart")
    count = "() => document.getElementById('live-chart').data[0].x.length"
    before = page.evaluate(count)
    assert before == 10
    assert (
        page.evaluate("() => document.getElementById('live-chart').data[0].meta")
        == (account.uuids[0])
    )

    # The agent posts a new batch; a worker ingests it while the page is open.
    now = timezone.now().replace(microsecond=0)
    rig = account.rigs[0]
    rig.report(samples(account.uuids[0], now, seconds=range(0, 1), util=77, used=3000))
    ingest_all()

    page.wait_for_function(f"() => ({count})() > {before}", timeout=10_000)
    last = page.evaluate(
        "() => { const t = document.getElementById('live-chart').data[0];"
        " return [t.x.length, t.y[t.y.length - 1]]; }"
    )
    assert last == [before + 1, 77]
    cell = page.locator(f'tr[data-gpu="{account.uuids[0]}"] [data-field=utilization]')
    assert cell.inner_text() == "77 %"  # the table follows too
    assert page.console_errors == []


def test_times_are_shown_in_the_browsers_time_zone(chromium, live_server, account, request):
    viewport = {"width": 1280, "height": 900}
    context = chromium.new_context(timezone_id="Asia/Tokyo", viewport=viewport)
    try:
        sign_in(context, live_server, account.owner)
        page = context.new_page()
        page.goto(f"{live_server.url}/dashboard/")
        page.wait_for_function(CHART_DRAWN, arg="#live-chart")
        time = page.locator("time[data-local]").first
        utc = datetime.fromisoformat(time.get_attribute("datetime"))
        tokyo = (utc + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")
        assert time.inner_text() == tokyo
        # The live chart's points are Tokyo wall-clock times too.
        last_x = page.evaluate(
            "() => { const x = document.getElementById('live-chart').data[0].x;"
            " return x[x.length - 1]; }"
        )
        gpu = GPU.objects.get(uuid=account.uuids[0])
        assert last_x == (gpu.last_sample_at + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")
        page.screenshot(path=str(screenshot(request)), full_page=True)
    finally:
        context.close()


def screenshot(request, suffix: str = ""):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{request.node.name}{suffix}.png"


def test_pages_fit_a_phone_without_horizontal_scrolling(chromium, live_server, account, request):
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        sign_in(context, live_server, account.owner)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        for name, (path, selector) in pages_of(account).items():
            page.goto(f"{live_server.url}{path}")
            if selector:
                page.wait_for_function(CHART_DRAWN, arg=selector)
            width = page.evaluate("() => document.documentElement.scrollWidth")
            page.screenshot(path=str(screenshot(request, f"-{name}")), full_page=True)
            assert width <= 390, f"{name} scrolls sideways: {width} px"
        assert errors == []
    finally:
        context.close()


MISSING_LABELS = """() => [...document.querySelectorAll("input, select, textarea")]
  .filter((el) => el.type !== "hidden")
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
    && !el.getAttribute("aria-labelledby"))
  .map((el) => el.outerHTML)"""

UNNAMED_GRAPHICS = """() => [...document.querySelectorAll("[data-figure], img, .chart")]
  .filter((el) => el.tagName === "IMG" ? el.getAttribute("alt") === null
    : !(el.getAttribute("role") === "img" && (el.getAttribute("aria-label") || "").trim()))
  .map((el) => el.outerHTML.slice(0, 120))"""

# WCAG 2 contrast of each element's text colour against the first opaque background behind it.
LOW_CONTRAST = """(selectors) => {
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let node = el; node; node = node.parentElement) {
      const c = rgb(getComputedStyle(node).backgroundColor);
      if (c.length < 4 || c[3] > 0.99) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const bad = [];
  let checked = 0;
  for (const el of document.querySelectorAll(selectors)) {
    if (!el.offsetParent && el.tagName !== "BODY") continue;
    if (!el.textContent.trim()) continue;
    const fg = lum(rgb(getComputedStyle(el).color).slice(0, 3)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    checked += 1;
    if (ratio < 4.5) bad.push(`${el.tagName}.${el.className} "${el.textContent.trim()
      .slice(0, 30)}": ${ratio.toFixed(2)}`);
  }
  return {checked, bad};
}"""

TEXT = (
    "main p, main h1, main h2, main h3, main td, main th, main label, main .stat-label,"
    " main .stat-value, main .muted, main .reason, main .status-pill, .nav a, .nav button,"
    " main a, main button, main .button, .site-footer p"
)


def tab_through(page, presses: int = 40) -> list[str]:
    """What keyboard focus lands on, Tab after Tab: each element's text (or its href)."""
    seen = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        seen.append(
            page.evaluate(
                "() => { const el = document.activeElement;"
                " return (el.innerText || el.getAttribute('aria-label') || el.name || '').trim(); }"
            )
        )
    return seen


@pytest.mark.parametrize("name", ["dashboard", "gpu", "rewards", "estimate"])
def test_basic_accessibility(page, live_server, account, name):
    sign_in(page.context, live_server, account.owner)
    path, selector = pages_of(account)[name]
    page.goto(f"{live_server.url}{path}")
    if selector:
        page.wait_for_function(CHART_DRAWN, arg=selector)

    assert page.evaluate(MISSING_LABELS) == []
    assert page.evaluate(UNNAMED_GRAPHICS) == []
    contrast = page.evaluate(LOW_CONTRAST, TEXT)
    assert contrast["checked"] >= 10
    assert contrast["bad"] == []
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").count() == 1

    focused = tab_through(page)
    assert focused[0] == "Skip to content"
    for link in ("Estimate", "Dashboard", "Machines", "Rewards", "Wallets", "Sign out"):
        assert link in focused, (link, focused)
    if name == "gpu":
        for button in ("1h", "24h", "7d", "30d"):
            assert button in focused, (button, focused)
    if name == "rewards":
        assert {"30 days", "90 days", "Export CSV (every entry)"} <= set(focused)
    if name == "estimate":
        assert "Estimate" in focused[focused.index("Sign out") :]
    assert page.console_errors == []


def test_keyboard_activates_a_range_button(page, live_server, account):
    sign_in(page.context, live_server, account.owner)
    page.goto(f"{live_server.url}/gpus/{account.uuids[0]}/?range=24h")
    page.wait_for_function(CHART_DRAWN, arg="#history-chart")
    page.get_by_role("link", name="7d", exact=True).focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**range=7d")
    assert page.locator('.range-picker [aria-current="page"]').inner_text() == "7d"
    page.wait_for_function(CHART_DRAWN, arg="#history-chart")
    assert page.console_errors == []


def test_the_estimate_form_works_with_a_keyboard_and_shows_errors(page, live_server):
    page.goto(f"{live_server.url}/estimate/")
    page.get_by_label("Hours online per day").fill("30")
    page.get_by_label("Hours online per day").press("Enter")
    # The browser's own validation stops a number above max; without it the server answers.
    page.goto(f"{live_server.url}/estimate/?hours=abc&utilization=90")
    assert page.get_by_text("Hours 'abc' is not a number.").is_visible()
    assert page.locator("#hours").get_attribute("aria-describedby") == "hours-error"
    assert page.console_errors == []


def test_a_new_contributor_sees_the_empty_state(page, live_server, alice):
    sign_in(page.context, live_server, alice)
    page.goto(f"{live_server.url}/dashboard/")
    assert page.get_by_role("heading", name="Connect your first GPU").is_visible()
    page.get_by_role("link", name="Add a machine").click()
    page.wait_for_url(f"{live_server.url}/nodes/")
    assert page.console_errors == []
