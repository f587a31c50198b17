"""Sign-in (EIP-4361) and the signed-in contributor's own API: who am I, my wallets."""

from django.conf import settings
from django.contrib.auth import login, logout
from django.middleware.csrf import get_token
from django.utils import timezone
from rest_framework.authentication import CSRFCheck
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from contributors import signin
from contributors.addresses import checksummed
from contributors.api import schema as doc
from contributors.models import GPU, Wallet
from portal.lib import ratelimit
from portal.lib.authentication import JsonSessionAuthentication as SessionAuthentication
from portal.lib.authentication import unreadable_body_is_a_400
from portal.lib.client_ip import client_ip
from portal.lib.errors import ApiError
from portal.lib.json_bodies import read_json_object, require_strings
from portal.lib.times import rfc3339, rfc3339_or_none

MAX_SIGNIN_BODY = 16 * 1024


def enforce_csrf(request) -> None:
    """Pages post with the csrftoken cookie echoed in X-CSRFToken; anything else is refused."""
    # The Django request, not DRF's: its POST is empty for JSON, so the check never parses
    # (or buffers) the body before our own size limit has looked at it.
    django_request = getattr(request, "_request", request)
    check = CSRFCheck(lambda _request: None)
    check.process_request(django_request)
    with unreadable_body_is_a_400():
        reason = check.process_view(django_request, None, (), {})
    if reason:
        raise ApiError(403, "csrf_failed", f"CSRF check failed: {reason}")


def signed_message(request) -> "signin.SiweMessage":
    """The verified message of a {"message", "signature"} body, its nonce spent."""
    ratelimit.enforce(
        "siwe",
        client_ip(request),
        settings.SIWE_VERIFY_RATE_PER_MIN,
        "Too many sign-in attempts from this address; try again shortly.",
    )
    body = read_json_object(request, MAX_SIGNIN_BODY)
    message, signature = require_strings(body, "message", "signature")
    return signin.check(message, signature, signin.Expected.for_request(request))


def wallet_json(wallet: Wallet) -> dict:
    return {
        "address": wallet.address,
        "is_payout": wallet.is_payout,
        "linked_at": rfc3339(wallet.linked_at),
    }


def me_json(contributor) -> dict:
    return {"id": contributor.pk, "wallets": [wallet_json(w) for w in contributor.wallets.all()]}


class NonceView(APIView):
    """GET /auth/nonce: a fresh nonce and everything needed to build the message around it.

    With `?address=0x…` the answer also carries `message`, the exact text to sign, so clients
    need no EIP-55 or EIP-4361 code of their own.
    """

    authentication_classes = []
    permission_classes = [AllowAny]

    @doc.NONCE
    def get(self, request):
        # Each nonce is a row until it expires: an address gets a bounded number a minute.
        ratelimit.enforce(
            "nonce",
            client_ip(request),
            settings.SIWE_NONCE_RATE_PER_MIN,
            "Too many sign-in nonces requested from this address; try again shortly.",
        )
        expected = signin.Expected.for_request(request)
        nonce = signin.issue_nonce()
        get_token(request)  # sets the csrftoken cookie the verify POST must echo
        body = {
            "nonce": nonce.nonce,
            "domain": expected.domain,
            "uri": f"{expected.origin}/",
            "chain_id": expected.chain_id,
            "statement": settings.SIWE_STATEMENT,
            "expires_in_s": settings.SIWE_NONCE_TTL_S,
        }
        address = request.query_params.get("address")
        if address is not None:
            if checksummed(address) is None:
                raise ApiError(
                    400,
                    "invalid_address",
                    "address is not an Ethereum address (or its EIP-55 checksum is wrong).",
                )
            body["message"] = signin.message_for(checksummed(address), nonce, expected)
        return Response(body, headers={"Cache-Control": "no-store"})


class VerifyView(APIView):
    """POST /auth/verify {"message", "signature"}: sign in (creating the contributor once)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @doc.VERIFY
    def post(self, request):
        enforce_csrf(request)
        message = signed_message(request)
        contributor = signin.contributor_for_sign_in(message.address)
        if not contributor.is_active:
            raise ApiError(403, "account_disabled", "This account was disabled by an admin.")
        # login() rotates the session key, so a session fixed before sign-in is worthless.
        login(request._request, contributor, backend="django.contrib.auth.backends.ModelBackend")
        return Response({"address": message.address, "contributor": me_json(contributor)})


class LogoutView(APIView):
    """POST /auth/logout: end the session (harmless when not signed in)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @doc.LOGOUT
    def post(self, request):
        enforce_csrf(request)
        logout(request._request)
        return Response({"signed_in": False})


class MeView(APIView):
    """GET /api/v1/me: the signed-in contributor and their wallets."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @doc.ME
    def get(self, request):
        return Response(me_json(request.user))


class WalletsView(APIView):
    """POST /api/v1/me/wallets {"message", "signature"}: link the wallet that signed."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @doc.WALLETS_LIST
    def get(self, request):
        return Response([wallet_json(w) for w in request.user.wallets.all()])

    @doc.WALLETS_LINK
    def post(self, request):
        message = signed_message(request)
        wallet, created = signin.link_wallet(request.user, message.address)
        return Response(wallet_json(wallet), status=201 if created else 200)


def _own_wallet(request, address: str) -> Wallet:
    if checksummed(address) is None:
        raise ApiError(400, "invalid_address", "The address is not an Ethereum address.")
    wallet = request.user.wallets.filter(address=checksummed(address)).first()
    if wallet is None:
        raise ApiError(404, "wallet_not_found", "You have no wallet with this address.")
    return wallet


class WalletView(APIView):
    """DELETE /api/v1/me/wallets/<address>: unlink any wallet but the last."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @doc.WALLET_UNLINK
    def delete(self, request, address: str):
        wallet = _own_wallet(request, address)
        signin.unlink_wallet(request.user, wallet.address)
        return Response(status=204)


class MyGpusView(APIView):
    """GET /api/v1/me/gpus: the signed-in contributor's GPUs with their live state."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @doc.MY_GPUS
    def get(self, request):
        now = timezone.now()
        gpus = (
            GPU.objects.filter(node__owner=request.user)
            .select_related("node", "mig_parent")
            .order_by("node__name", "node_id", "uuid")
        )
        return Response(
            [
                {
                    "uuid": gpu.uuid,
                    "name": gpu.name,
                    "node": {"id": gpu.node_id, "name": gpu.node.name},
                    "status": gpu.status(now),
                    "last_seen": rfc3339_or_none(gpu.last_seen_at),
                    "last_sample_at": rfc3339_or_none(gpu.last_sample_at),
                    "utilization_gpu_pct": gpu.last_utilization_gpu_pct,
                    "memory_used_mib": gpu.last_memory_used_mib,
                    "memory_total_mib": gpu.memory_total_mib,
                    "committed_memory_mib": gpu.effective_committed_mib,
                    "temperature_c": gpu.last_temperature_c,
                    "power_w": gpu.last_power_w,
                    "job_id": gpu.last_job_id or None,
                    "enabled": gpu.enabled,
                    "mig_parent_uuid": gpu.mig_parent.uuid if gpu.mig_parent else None,
                }
                for gpu in gpus
            ]
        )


class MyGpuSeriesView(APIView):
    """GET /api/v1/me/gpus/<uuid>/series?range=1h|24h|7d|30d: history for charts."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @doc.GPU_SERIES
    def get(self, request, uuid: str):
        from contributors.series import RANGES, series

        range_name = request.query_params.get("range", "1h")
        if range_name not in RANGES:
            raise ApiError(400, "invalid_range", f"range must be one of {', '.join(RANGES)}.", None)
        gpu = GPU.objects.filter(uuid=uuid, node__owner=request.user).first()
        if gpu is None:
            raise ApiError(404, "not_found", "You have no GPU with this uuid.")
        return Response(series(gpu, range_name))


class PayoutWalletView(APIView):
    """POST /api/v1/me/wallets/<address>/payout: claims pay this wallet from now on."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @doc.WALLET_PAYOUT
    def post(self, request, address: str):
        wallet = _own_wallet(request, address)
        wallet.make_payout()
        return Response(wallet_json(wallet))


class DemoSignInView(APIView):
    """POST /auth/demo {"name": "alice"}: sign in as a demo contributor (DEBUG demo runs only).

    The portal signs a real EIP-4361 message with the demo key and verifies it like any other,
    so the demo exercises the same path; the keys are public, hence never in production.
    """

    authentication_classes = []
    permission_classes = [AllowAny]

    @doc.DEMO
    def post(self, request):
        from portal.demo import DEMO_CONTRIBUTORS, demo_account

        if not (settings.DEBUG and settings.DEMO_FLEET):
            raise ApiError(404, "not_found", "The demo is not running here.")
        enforce_csrf(request)
        body = read_json_object(request, 1024)
        name = body.get("name")
        if name not in DEMO_CONTRIBUTORS:
            raise ApiError(400, "validation_failed", f"name is one of {DEMO_CONTRIBUTORS}.")
        from eth_account.messages import encode_defunct

        account = demo_account(name)
        expected = signin.Expected.for_request(request)
        message = signin.message_for(account.address, signin.issue_nonce(), expected)
        signature = account.sign_message(encode_defunct(text=message)).signature.hex()
        verified = signin.check(message, "0x" + signature.removeprefix("0x"), expected)
        contributor = signin.contributor_for_sign_in(verified.address)
        login(request._request, contributor, backend="django.contrib.auth.backends.ModelBackend")
        return Response({"address": verified.address, "contributor": me_json(contributor)})
