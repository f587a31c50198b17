"""A newcomer's first visit to a fresh demo, in headless Chromium: the demo fleet enrolls its
machines and makes its week of history (and each contributor's earlier claim, relayed to the
chain); alice signs in with the demo button, sees a week of charts and earnings, presses Claim
and sees the claim confirmed with its transaction hash in the history, and the distributor's
`claimed(account)` on the chain equals what the history says."""

from decimal import Decimal

import pytest
from django.core.cache import cache

from contributors.models import GpuHour
from contributors.signin import contributor_for_sign_in
from portal.demo import Fleet, demo_account
from rewards.models import Claim
from tests.support.claims import start_evm

pytestmark = [
    pytest.mark.browser,
    pytest.mark.processes,
    pytest.mark.gpu_verification,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_catalog"),
]

CHART_DRAWN = """(selector) => {
  const el = document.querySelector(selector);
  return el && el.classList.contains("js-plotly-plot") && Array.isArray(el.data)
    && el.data.length > 0;
}"""


@pytest.fixture
def demo(live_server, settings, monkeypatch, tmp_path):
    """A fresh demo as `make run` starts it: demo settings, a chain, the fleet with its week."""
    cache.clear()
    settings.DEBUG = True
    settings.DEMO_FLEET = True
    settings.REWARD_EPOCH_S = 300
    settings.REWARD_GRACE_S = 60
    settings.AGENT_SAMPLE_INTERVAL_S = 10
    settings.GPU_VERIFICATION_N = 128
    settings.GPU_VERIFICATION_MAX_ROUNDS = 2
    evm = start_evm(settings, monkeypatch)
    fleet = Fleet(live_server.url, tmp_path / "demo")
    fleet.start(history=True)
    fleet.stop.set()  # the live agents are the fleet test's business; the week is made
    for thread in fleet.threads:
        thread.join(timeout=30)
    return evm


def omnit(text: str) -> Decimal:
    return Decimal(text.split()[0].replace(",", ""))


def test_a_newcomer_signs_in_sees_a_week_and_claims(page, live_server, demo):
    alice = demo_account("alice").address
    contributor = contributor_for_sign_in(alice)
    # The earlier claim was relayed at start; the chain confirms it as blocks come.
    (earlier,) = Claim.objects.filter(contributor=contributor)
    assert earlier.relayed_at is not None and earlier.tx_hash
    demo.mine()
    demo.watch()

    # Sign in as a newcomer would: the sign-in page's demo button.
    page.goto(f"{live_server.url}/signin/")
    page.get_by_role("button", name="Sign in as alice").click()
    page.wait_for_url(f"{live_server.url}/dashboard/**")
    earned = omnit(
        page.locator(".stat", has_text="Earned, last 24 h").locator(".stat-value").inner_text()
    )
    assert earned > 0
    page.wait_for_function(CHART_DRAWN, arg="#live-chart", timeout=15_000)

    # A GPU's week: the 7-day chart spans the history.
    gpu_link = page.locator("tr[data-gpu] a").first
    uuid = gpu_link.get_attribute("href").strip("/").split("/")[-1]
    page.goto(f"{live_server.url}/gpus/{uuid}/?range=7d")
    page.wait_for_function(CHART_DRAWN, arg="#history-chart", timeout=15_000)
    xs = page.eval_on_selector(
        "#history-chart", "el => el.data.flatMap((t) => t.x || []).map((x) => Date.parse(x))"
    )
    assert (max(xs) - min(xs)) / 3_600_000 > 6 * 24
    assert GpuHour.objects.filter(gpu__uuid=uuid).count() >= 6 * 24

    # The claims page: the earlier claim confirmed, the rest claimable; claim it.
    page.goto(f"{live_server.url}/claims/")
    page.locator(f"tr[data-claim-id='{earlier.pk}'][data-status='confirmed']").wait_for()
    assert omnit(page.locator("#claimable").inner_text()) > 0
    page.get_by_role("button", name="Claim without gas (the portal sends it)").click()
    page.locator("tr[data-status='submitted']").wait_for()
    demo.mine()
    demo.watch()
    page.reload()
    latest = Claim.objects.filter(contributor=contributor).latest("pk")
    row = page.locator(f"tr[data-claim-id='{latest.pk}'][data-status='confirmed']")
    row.wait_for()
    assert latest.tx_hash in row.inner_text()

    # The chain agrees with the history, to the wei.
    confirmed = Claim.objects.filter(contributor=contributor, status="confirmed")
    assert confirmed.count() == 2
    assert demo.claimed(alice) == max(c.cumulative_wei for c in confirmed)
    assert demo.claimed(alice) == sum(c.amount_wei for c in confirmed)
    assert demo.balance(alice) == demo.claimed(alice)
    assert page.console_errors == []
