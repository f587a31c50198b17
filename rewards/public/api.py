"""The public API: GET /api/v1/network and GET /api/v1/leaderboard, what the pages show, as
JSON. No sign-in, no session, no query: they serve what the beat task stored (`store`)."""

from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.lib.errors import ApiError
from rewards.public import schema as doc
from rewards.public import store
from rewards.public.views import board_choice

RETRY_AFTER_S = 10


def _computing() -> ApiError:
    return ApiError(
        503,
        "computing",
        "The public figures are being computed; ask again in a few seconds.",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class PublicView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    # No max-age for caches on the way: a contributor who leaves the board leaves every copy.


class NetworkView(PublicView):
    """GET /api/v1/network: the network's figures (`rewards.public.network`)."""

    @doc.NETWORK
    def get(self, request):
        figures = store.read(store.NETWORK_KEY)
        if figures is None:
            raise _computing()
        return Response(figures)


class LeaderboardView(PublicView):
    """GET /api/v1/leaderboard?period=24h|7d|30d&by=total|compute|idle|uptime."""

    @doc.LEADERBOARD
    def get(self, request):
        period, board, errors = board_choice(request.query_params)
        if errors:
            raise ApiError(
                400,
                "validation_failed",
                "; ".join(f"{e['field']} must be {e['error']}" for e in errors) + ".",
                errors,
            )
        boards = store.read(store.LEADERBOARD_KEY)
        if boards is None:
            raise _computing()
        chosen = boards["periods"][period]
        return Response(
            {
                "computed_at": boards["computed_at"],
                "period": period,
                "by": board,
                "since": chosen["since"],
                "size": boards["size"],
                "rows": [store.public_row(row) for row in chosen["boards"][board]],
            }
        )
