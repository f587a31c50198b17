"""Tokens that machines send as `Authorization: Bearer …` (agents, the job scheduler).

Each caller names its realm, which goes into the `WWW-Authenticate` header of a 401.
"""

from django.conf import settings

from portal.lib import ratelimit
from portal.lib.client_ip import client_ip
from portal.lib.errors import ApiError


def bearer_token(request, realm: str) -> str:
    """The request's bearer token, or 401 `invalid_token` when it sends none."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "invalid_token",
            "Send the token as 'Authorization: Bearer …'.",
            headers={"WWW-Authenticate": realm},
        )
    return token.strip()


def refuse_bad_token(request, detail: str, realm: str) -> None:
    """401 for a token that is not valid; 429 with Retry-After once a client address has sent
    BAD_TOKEN_RATE_PER_MIN of them in a minute (guessing tokens, or a fleet misconfigured)."""
    ratelimit.enforce(
        "bad_token",
        client_ip(request),
        settings.BAD_TOKEN_RATE_PER_MIN,
        "Too many requests with tokens that are not valid from this address; try again later.",
    )
    raise ApiError(401, "invalid_token", detail, headers={"WWW-Authenticate": realm})
