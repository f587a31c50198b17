"""The public figures as tests reach them: the beat task run in-process, the public API read
back, contributors with wallets of their own, and what a drawn chart looks like in Chromium."""

from django.test import Client
from eth_account import Account
from eth_utils import keccak

from contributors.signin import contributor_for_sign_in
from rewards.public.tasks import compute_public_stats

PERIODS = ("24h", "7d", "30d")
BOARDS = ("total", "compute", "idle", "uptime")

# Every element matching the selector holds a plotly chart with data (tests/test_pages_browser).
CHART_DRAWN = """(selector) => {
  const charts = [...document.querySelectorAll(selector)];
  return charts.length > 0 && charts.every((el) => el.classList.contains("js-plotly-plot")
    && Array.isArray(el.data) && el.data.length > 0);
}"""


def run_beat_task() -> None:
    """What beat runs every PUBLIC_STATS_EVERY_S, here in this process."""
    compute_public_stats()


def wallet_of(label: str):
    """A wallet of its own for each label, the same every run."""
    return Account.from_key(keccak(text=f"omnitensor-test-public/{label}"))


def contributor(label: str):
    """A contributor who signed in with `wallet_of(label)` (their payout wallet)."""
    return contributor_for_sign_in(wallet_of(label).address)


def short(address: str) -> str:
    """How the leaderboard names a contributor by wallet."""
    return f"{address[:6]}…{address[-4:]}"


def board(period: str = "24h", by: str = "total", client: Client | None = None) -> dict:
    response = (client or Client()).get("/api/v1/leaderboard", {"period": period, "by": by})
    assert response.status_code == 200, response.content
    return response.json()


def network(client: Client | None = None) -> dict:
    response = (client or Client()).get("/api/v1/network")
    assert response.status_code == 200, response.content
    return response.json()
