"""Pages say the reward policy in force (epoch length, pools, grace), never a fixed "every
hour": the demo settles 5-minute epochs. The estimate reads plainly on an empty network."""

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def text_of(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


@pytest.mark.parametrize(
    ("epoch_s", "grace_s", "epoch", "grace"),
    [(300, 60, "5 minutes", "1 minute"), (3600, 900, "hour", "15 minutes")],
)
def test_the_landing_and_estimate_pages_say_the_policy_in_force(
    settings, epoch_s, grace_s, epoch, grace
):
    settings.REWARD_EPOCH_S, settings.REWARD_GRACE_S = epoch_s, grace_s
    landing = text_of(Client().get("/"))
    assert f"every {epoch}, {grace} after it ends" in landing
    assert "1,000.0000 OMNIT of compute and 250.0000 OMNIT of idle rewards" in landing
    estimate = text_of(Client().get("/estimate/"))
    assert "No epoch has been settled on this network yet" in estimate
    assert f"every {epoch}" in estimate
    assert "every hour" not in (landing + estimate).lower() or epoch == "hour"


def test_the_rewards_page_says_the_policy_in_force(settings, alice):
    from tests.support.siwe import signed_in

    settings.REWARD_EPOCH_S, settings.REWARD_GRACE_S = 300, 60
    page = text_of(signed_in(alice).get("/rewards/"))
    assert "Every 5 minutes the network splits two pools" in page
    assert "settled 1 minute after the epoch ends" in page
