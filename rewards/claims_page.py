"""The /claims/ page: claimable and pending OMNIT, the Claim buttons (from a browser wallet, or
sent by the portal without gas) and the claim history."""

import time

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from portal.lib.errors import Refused
from rewards import chain, relay
from rewards.claims import balance_of
from rewards.models import Claim
from rewards.wei import omnit

HISTORY_ROWS = 100


@require_GET
@ensure_csrf_cookie
@login_required
def claims_page(request):
    balance = balance_of(request.user)
    try:
        chain.config()
        configured = True
    except Refused:
        configured = False
    history = [
        {"claim": claim, "amount": omnit(claim.amount_wei), "tx_url": chain.tx_url(claim.tx_hash)}
        for claim in Claim.objects.filter(contributor=request.user)[:HISTORY_ROWS]
    ]
    payout = request.user.wallets.filter(is_payout=True).first()
    # A voucher issued but not sent (a relay refused earlier) can still be sent by the portal.
    unsent = Claim.objects.filter(
        contributor=request.user,
        status=Claim.Status.ISSUED,
        deadline__gt=int(time.time()) + relay.MIN_TIME_LEFT_S,
    ).exists()
    return render(
        request,
        "rewards/claims.html",
        {
            "claimable": omnit(balance.claimable),
            "pending": omnit(balance.pending),
            "claimed": omnit(balance.claimed),
            "balance": balance,
            "claimable_wei": balance.claimable,
            "chain_configured": configured,
            "relay_available": configured and relay.available(),
            "relay_per_day": settings.CLAIM_RELAY_PER_DAY,
            "relay_enabled": balance.claimable > 0 or unsent,
            "chain_id": settings.CHAIN_ID,
            "payout": payout,
            "history": history,
        },
    )
