"""The pages in Chromium with markup in every name an agent chose: no dialog opens, the browser
reports no Content-Security-Policy violation and no console error, the charts still draw, and
their labels show the markup as text. The admin and Swagger UI work under the same policy.

Data comes through the real agent and scheduler APIs (tests/support/markup_agent.py).
"""

import re

import pytest
from playwright.sync_api import expect

from contributors.models import Node
from tests.support.browser import sign_in
from tests.support.markup_agent import GPU_NAMES, HOSTNAME, JOB_ID, reported_machine

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Runs before any of the page's own scripts, in every document the page opens.
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(
    `${event.effectiveDirective}: ${event.blockedURI} (${event.sourceFile}:${event.lineNumber})`
  );
});
"""

CHART_DRAWN = """(selector) => {
  const charts = [...document.querySelectorAll(selector)];
  return charts.length > 0 && charts.every((el) => el.classList.contains("js-plotly-plot")
    && Array.isArray(el.data) && el.data.length > 0 && el.querySelector(".main-svg"));
}"""


@pytest.fixture
def machine(alice):
    return reported_machine(alice)


@pytest.fixture
def watched(page):
    """The page, recording dialogs (dismissed) and policy violations."""
    page.dialogs = []

    def on_dialog(dialog):
        page.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.add_init_script(WATCH)
    return page


def assert_clean(page) -> None:
    page.wait_for_load_state("networkidle")
    assert page.evaluate("() => window.__violations") == []
    assert page.console_errors == []
    assert page.dialogs == []


def pages_of(machine) -> dict[str, tuple[str, str]]:
    """Page → (path, selector of the charts it must draw)."""
    return {
        "nodes": ("/nodes/", ""),
        "dashboard": ("/dashboard/", "#live-chart"),
        "gpu": (f"/gpus/{machine.uuids[0]}/?range=24h", "#history-chart, #uptime-chart"),
        "rewards": ("/rewards/", "#daily-chart"),
    }


@pytest.mark.parametrize("name", ["nodes", "dashboard", "gpu", "rewards"])
def test_pages_show_agent_markup_as_text_under_the_policy(watched, live_server, machine, name):
    sign_in(watched.context, live_server, machine.agent.node.owner)
    path, selector = pages_of(machine)[name]

    response = watched.goto(f"{live_server.url}{path}")

    assert response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    if selector:
        watched.wait_for_function(CHART_DRAWN, arg=selector, timeout=10_000)
    assert_clean(watched)
    body = watched.locator("main").inner_text()
    assert GPU_NAMES[0] in body
    assert watched.locator("main img").count() == 0  # no element came out of a name


def test_chart_labels_show_the_markup_as_text(watched, live_server, machine):
    sign_in(watched.context, live_server, machine.agent.node.owner)
    label = f"{HOSTNAME} · {GPU_NAMES[0]} …{machine.uuids[0][-4:]}"

    watched.goto(f"{live_server.url}/dashboard/")
    watched.wait_for_function(CHART_DRAWN, arg="#live-chart", timeout=10_000)
    legend = watched.locator("#live-chart .legendtext").all_text_contents()
    plot = watched.locator("#live-chart .nsewdrag").first.bounding_box()
    watched.mouse.move(plot["x"] + plot["width"] - 5, plot["y"] + plot["height"] / 2)
    watched.locator("#live-chart .hoverlayer text").first.wait_for()
    hover = " ".join(watched.locator("#live-chart .hoverlayer").all_text_contents())
    # plotly.js turns `<a href>` in a label into a link: none was made from a name.
    assert watched.locator("#live-chart a").count() == 0

    assert [text for text in legend if GPU_NAMES[0] in text] == [label]
    assert f"{label} : " in hover  # `%{meta}` in the hostname stays text in the hover too
    assert_clean(watched)

    watched.goto(f"{live_server.url}/gpus/{machine.uuids[0]}/?range=24h")
    watched.wait_for_function(CHART_DRAWN, arg="#history-chart", timeout=10_000)

    assert JOB_ID in watched.locator("#history-chart .annotation-text").all_text_contents()
    assert watched.locator("#history-chart a").count() == 0
    assert_clean(watched)


def test_revoking_a_machine_asks_first_naming_it_as_text(watched, live_server, machine):
    sign_in(watched.context, live_server, machine.agent.node.owner)
    watched.goto(f"{live_server.url}/nodes/")

    watched.get_by_role("button", name="Revoke").click()

    assert watched.dialogs == [f"Revoke {HOSTNAME}? It will stop reporting."]
    assert Node.objects.get(pk=machine.agent.node_id).revoked_at is None  # dismissed: kept
    watched.dialogs.clear()
    assert_clean(watched)


def test_the_copy_button_copies_the_enrollment_command(watched, live_server, machine):
    sign_in(watched.context, live_server, machine.agent.node.owner)
    watched.goto(f"{live_server.url}/nodes/")
    watched.get_by_role("button", name="Add a machine").click()

    copy = watched.locator("button[data-copy='#enroll-command']")
    copy.click()

    # Headless Chromium may refuse the clipboard: either answer shows the script ran.
    expect(copy).to_have_text(re.compile(r"^(Copied|Select and copy the text above)$"))
    assert_clean(watched)


def test_the_dashboard_fills_its_balance_cards(watched, live_server, machine):
    sign_in(watched.context, live_server, machine.agent.node.owner)

    watched.goto(f"{live_server.url}/dashboard/")

    lifetime = watched.locator("#lifetime")
    lifetime.get_by_text("OMNIT").wait_for()
    assert lifetime.inner_text().endswith("OMNIT") and lifetime.inner_text() != "—"
    assert_clean(watched)


def test_the_admin_works_under_the_policy(watched, live_server, machine, django_user_model):
    admin = django_user_model.objects.create_superuser(
        username="network-admin", email="", password="a long enough admin password"
    )
    sign_in(watched.context, live_server, admin)
    node = machine.agent.node

    for path in (
        "/admin/",
        "/admin/contributors/node/",
        f"/admin/contributors/node/{node.pk}/change/",
        "/admin/contributors/gpu/",
        "/admin/rewards/job/",
    ):
        response = watched.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        assert "content-security-policy" in response.headers
        assert_clean(watched)
    # The changelist's own scripts run: ticking a row shows the action counter.
    watched.goto(f"{live_server.url}/admin/contributors/node/")
    watched.locator("input.action-select").first.check()
    assert "1 of 1 selected" in watched.locator(".action-counter").inner_text()
    assert_clean(watched)


def test_swagger_ui_works_under_the_policy(watched, live_server):
    response = watched.goto(f"{live_server.url}/api/docs/")

    assert "'nonce-" in response.headers["content-security-policy"]
    watched.locator("#swagger-ui .opblock").first.wait_for(timeout=15_000)
    assert watched.locator("#swagger-ui .opblock").count() > 5
    assert_clean(watched)
