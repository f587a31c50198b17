"""The claims API: the chain's configuration, issuing vouchers, reporting their transactions."""

import re

from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.lib.authentication import JsonSessionAuthentication as SessionAuthentication
from portal.lib.errors import ApiError, Refused
from portal.lib.json_bodies import read_json_object, require_strings
from portal.lib.times import rfc3339_or_none
from rewards import chain, claims, relay
from rewards.api import schema as doc
from rewards.models import Claim

TX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")


def claim_json(claim: Claim) -> dict:
    return {
        "claim_id": claim.pk,
        "account": claim.account,
        "cumulative_amount": str(claim.cumulative_wei),
        "amount": str(claim.amount_wei),
        "deadline": claim.deadline,
        "status": claim.status,
        "tx_hash": claim.tx_hash or None,
        "tx_url": chain.tx_url(claim.tx_hash),
        "created_at": rfc3339_or_none(claim.created_at),
        "submitted_at": rfc3339_or_none(claim.submitted_at),
        "confirmed_at": rfc3339_or_none(claim.confirmed_at),
        "expired_at": rfc3339_or_none(claim.expired_at),
        "relayed": claim.relayed_at is not None,
    }


def voucher_json(claim: Claim) -> dict:
    return {
        "claim_id": claim.pk,
        "account": claim.account,
        "cumulative_amount": str(claim.cumulative_wei),
        "deadline": claim.deadline,
        "signature": claim.signature,
        "distributor": claim.distributor,
        "chain_id": claim.chain_id,
        "tx": {
            "to": claim.distributor,
            "data": chain.encode_claim_call(
                claim.account, claim.cumulative_wei, claim.deadline, claim.signature
            ),
        },
    }


class ClaimsConfigView(APIView):
    """GET /api/v1/claims/config: the chain, distributor, token and signer vouchers are for."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @doc.CLAIMS_CONFIG
    def get(self, request):
        cfg = chain.config()
        return Response(
            {
                "chain_id": cfg.chain_id,
                "distributor": cfg.distributor,
                "token": cfg.token,
                "signer": cfg.signer,
            }
        )


class MyClaimsView(APIView):
    """GET /api/v1/me/claims: my claims, newest first. POST: a voucher for my payout wallet."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @doc.MY_CLAIMS_LIST
    def get(self, request):
        rows = Claim.objects.filter(contributor=request.user)[:200]
        return Response({"claims": [claim_json(c) for c in rows]})

    @doc.MY_CLAIMS_ISSUE
    def post(self, request):
        claim = claims.issue(request.user)
        return Response(voucher_json(claim), status=201)


class ClaimTransactionView(APIView):
    """POST /api/v1/me/claims/<id>/transaction {"tx_hash"}: the page sent the voucher."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @doc.MY_CLAIM_TRANSACTION
    def post(self, request, claim_id: int):
        (tx_hash,) = require_strings(read_json_object(request, 4096), "tx_hash")
        if not TX_HASH.match(tx_hash):
            raise ApiError(
                400,
                "validation_failed",
                "tx_hash must be 0x and 64 hex digits.",
                [{"field": "tx_hash", "error": "0x and 64 hex digits"}],
            )
        claim = claims.report_transaction(request.user, claim_id, tx_hash.lower())
        return Response(claim_json(claim))


class ClaimRelayView(APIView):
    """POST /api/v1/me/claims/<id>/relay: the portal sends my issued voucher and pays the gas."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @doc.MY_CLAIM_RELAY
    def post(self, request, claim_id: int):
        try:
            claim = relay.relay(request.user, claim_id)
        except Refused as refusal:
            if refusal.status != 429:
                raise
            retry_after = str(refusal.extra.get("retry_after_s", 60))
            raise ApiError(
                429, refusal.code, refusal.detail, headers={"Retry-After": retry_after}
            ) from None
        return Response(claim_json(claim), status=202)
