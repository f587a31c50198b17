"""The agent API (DESIGN.md "Agent API (v1)"): enroll, telemetry, config.

Third-party agents rely on these status and error codes; change them only with a new version.
"""

from django.conf import settings
from django.db import transaction
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from contributors import enrollment, telemetry, tokens
from contributors.models import Node
from contributors.tasks import request_drain
from portal import hotcache, ratelimit
from portal.api_errors import ApiError
from portal.client_ip import client_ip
from portal.jsonbody import read_json_object

MAX_ENROLL_BODY = 256 * 1024


AGENT_REALM = 'Bearer realm="omnitensor-agent"'


def bearer_token(request, realm: str = AGENT_REALM) -> str:
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


def refuse_bad_token(request, detail: str, realm: str = AGENT_REALM) -> None:
    """401 for a token that is not valid; 429 with Retry-After once a client address has sent
    BAD_TOKEN_RATE_PER_MIN of them in a minute (guessing tokens, or a fleet misconfigured)."""
    ratelimit.enforce(
        "bad_token",
        client_ip(request),
        settings.BAD_TOKEN_RATE_PER_MIN,
        "Too many requests with tokens that are not valid from this address; try again later.",
    )
    raise ApiError(401, "invalid_token", detail, headers={"WWW-Authenticate": realm})


def _refuse_token(request, found: bool, revoked: bool) -> None:
    if not found:
        refuse_bad_token(
            request, "This token is not valid (a rotated token stops working at once)."
        )
    if revoked:
        raise ApiError(403, "token_revoked", "This node was revoked by its owner or an admin.")


def authenticated_node(request) -> Node:
    node = Node.authenticate(bearer_token(request))
    _refuse_token(request, node is not None, node is not None and node.is_revoked)
    return node


class JsonOnly(BaseContentNegotiation):
    """Agents get JSON whatever their Accept header says: no header parsing on every report
    (DRF's "ignore the client" negotiation)."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class AgentView(APIView):
    """Agent endpoints authenticate themselves; DRF's session and CSRF machinery stays out."""

    authentication_classes = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonOnly

    def get_authenticate_header(self, request):
        return AGENT_REALM


class EnrollView(AgentView):
    def post(self, request):
        ratelimit.enforce(
            "enroll",
            client_ip(request),
            settings.ENROLL_RATE_PER_MIN,
            f"At most {settings.ENROLL_RATE_PER_MIN} enrollment attempts a minute per address.",
        )
        body = read_json_object(request, MAX_ENROLL_BODY)
        code = body.get("enrollment_code")
        hostname = body.get("hostname", "")
        version = body.get("agent_version", "")
        gpus = body.get("gpus", [])
        errors = []
        if not isinstance(code, str) or not code:
            errors.append({"field": "enrollment_code", "error": "required"})
        if not isinstance(hostname, str) or len(hostname) > 255 or not hostname.isprintable():
            errors.append({"field": "hostname", "error": "printable, at most 255 characters"})
        if not isinstance(version, str) or len(version) > 50 or not version.isprintable():
            errors.append({"field": "agent_version", "error": "printable, at most 50 characters"})
        if not isinstance(gpus, list) or len(gpus) > telemetry.MAX_INVENTORY:
            errors.append({"field": "gpus", "error": "a list of GPUs"})
        if errors:
            raise ApiError(400, "validation_failed", "The enrollment has invalid fields.", errors)
        enrolled = enrollment.enroll(code, hostname.strip(), version.strip(), gpus)
        body = {
            "node_id": enrolled.node.pk,
            "node_token": enrolled.token,
            "sample_interval_s": settings.AGENT_SAMPLE_INTERVAL_S,
            "report_interval_s": settings.AGENT_REPORT_INTERVAL_S,
        }
        if enrolled.rejected_gpus:
            body["rejected_gpus"] = enrolled.rejected_gpus
        return Response(body, status=201, headers={"Cache-Control": "no-store"})


class TelemetryView(AgentView):
    """The hottest path of the portal. The usual report of a known agent costs one Redis round
    trip (rate limit, and the agent as remembered: `telemetry.KnownAgent`) and one INSERT that
    also checks the token; anything else takes the full path, which reads the node and its
    GPUs in one query. A worker stores the samples later (`contributors.ingest`).

    The token is checked before the body is read: a remembered entry exists only for the
    digest of a token that authenticated, and any other token is looked up first, so a token
    that is not valid costs a hash and one indexed lookup, never a read or a parse."""

    def post(self, request):
        token = bearer_token(request)
        digest = tokens.digest(token)
        remembered_key = telemetry.KnownAgent.CACHE_KEY.format(digest=digest)
        agent_node = None
        try:
            remembered = ratelimit.enforce(
                "telemetry",
                digest,
                settings.TELEMETRY_RATE_PER_MIN,
                f"At most {settings.TELEMETRY_RATE_PER_MIN} telemetry requests a minute per node.",
                fetch=remembered_key,
            )
        except ApiError:
            # Throttled: a token that is not (or no longer) valid hears that first, as agents
            # stop on 401/403 but only wait on 429.
            self._authenticated(request, token, digest, remembered_key)
            raise
        known = telemetry.KnownAgent.loads(remembered)
        if known is None:
            agent_node = self._authenticated(request, token, digest, remembered_key)
        body = read_json_object(request, settings.TELEMETRY_MAX_BODY_BYTES, "batch_too_large")
        outcome = None if known is None else telemetry.accept_known(known, digest, body)
        if outcome is None:
            if agent_node is None:
                agent_node = self._authenticated(request, token, digest, remembered_key)
            outcome = self._full_path(agent_node, body, remembered_key)
        if outcome.enqueue:
            node_pk = outcome.batch.node_id
            transaction.on_commit(lambda: request_drain(node_pk))
        return Response(outcome.body, status=outcome.status)

    @staticmethod
    def _authenticated(request, token: str, digest: str, remembered_key: str):
        """The token's node and GPUs, or the 401/403 (429 past the bad-token limit). A token
        that is not valid leaves nothing in the cache: its counter and entry are dropped."""
        agent_node = telemetry.authenticate(token)
        if agent_node is None or agent_node.revoked:
            hotcache.delete(remembered_key)
            ratelimit.forget("telemetry", digest)
        _refuse_token(
            request, agent_node is not None, agent_node is not None and agent_node.revoked
        )
        return agent_node

    @staticmethod
    def _full_path(agent_node, body: dict, remembered_key: str) -> telemetry.Outcome:
        outcome = telemetry.accept(agent_node.node, body, gpu_rows=agent_node.gpu_rows)
        if outcome.status != 202 or "rejected_gpus" in outcome.body:
            return outcome
        gpus = body.get("gpus") or []
        # Remember the node as it now stands (its inventory may just have changed).
        remembered = telemetry.KnownAgent(
            node_id=agent_node.node.pk,
            gpus=outcome.gpus,
            inventory=telemetry.inventory_fingerprint(gpus) if gpus else "",
        )
        hotcache.set_text(remembered_key, remembered.dumps(), telemetry.KnownAgent.TTL_S)
        return outcome


class ConfigView(AgentView):
    def get(self, request):
        node = authenticated_node(request)
        return Response(
            {
                "node_id": node.pk,
                "sample_interval_s": settings.AGENT_SAMPLE_INTERVAL_S,
                "report_interval_s": settings.AGENT_REPORT_INTERVAL_S,
                "gpus": [
                    {
                        "uuid": gpu.uuid,
                        "committed_memory_mib": gpu.effective_committed_mib,
                        "enabled": gpu.enabled,
                    }
                    for gpu in node.gpus.all()
                ],
            }
        )
