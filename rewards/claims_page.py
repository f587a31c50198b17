"""The /claims/ page: claimable and pending OMNIT, the Claim button and the claim history."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from portal.lib.errors import Refused
from rewards import chain
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
            "chain_id": settings.CHAIN_ID,
            "payout": payout,
            "history": history,
        },
    )
