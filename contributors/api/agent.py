"""The agent API (DESIGN.md "Agent API (v1)"): enroll, telemetry, config, and the proof-of-GPU
challenges' commit and reveal (agent/PROOF.md).

Third-party agents rely on these status and error codes; change them only with a new version.
"""

import functools

import msgspec
from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from contributors import enrollment
from contributors.api import agent_schema as doc
from contributors.models import Node
from contributors.telemetry import intake
from contributors.telemetry.dispatch import request_drain
from contributors.telemetry.validation import MAX_INVENTORY, read_report
from contributors.verification import challenges
from contributors.verification.proof import LEAF_BYTES
from portal import metrics
from portal.lib import ratelimit
from portal.lib.bearer import bearer_token, refuse_bad_token
from portal.lib.client_ip import client_ip
from portal.lib.errors import ApiError
from portal.lib.json_bodies import read_capped, read_json_object

MAX_ENROLL_BODY = 256 * 1024


AGENT_REALM = 'Bearer realm="omnitensor-agent"'


def _refuse_token(request, found: bool, revoked: bool) -> None:
    if not found:
        refuse_bad_token(
            request, "This token is not valid (a rotated token stops working at once).", AGENT_REALM
        )
    if revoked:
        raise ApiError(403, "token_revoked", "This node was revoked by its owner or an admin.")


def authenticated_node(request) -> Node:
    node = Node.authenticate(bearer_token(request, AGENT_REALM))
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
    @doc.ENROLL
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
        if not isinstance(gpus, list) or len(gpus) > MAX_INVENTORY:
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
    """The hottest path of the portal (`contributors.telemetry.intake`): the batch is stored,
    answered, and a drain asked for once it is committed."""

    @doc.TELEMETRY
    def post(self, request):
        outcome = intake.receive(
            bearer_token(request, AGENT_REALM),
            read_body=lambda: read_report(
                read_capped(request, settings.TELEMETRY_MAX_BODY_BYTES, "batch_too_large")
            ),
            refuse_token=lambda found, revoked: _refuse_token(request, found, revoked),
        )
        if outcome.result is intake.Result.ACCEPTED:
            metrics.batch_accepted()
        if outcome.enqueue:
            transaction.on_commit(lambda: request_drain(outcome.node_id))
        # JSON written by msgspec, as DRF's renderer would (compact, UTF-8): rendering a
        # Response is a measurable share of the portal's most frequent request.
        return HttpResponse(
            msgspec.json.encode(outcome.body),
            status=outcome.status,
            content_type="application/json",
        )


class ConfigView(AgentView):
    @doc.CONFIG
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
                "challenges": challenges.waiting_for(node),
            },
            headers={"Cache-Control": "no-store"},
        )


# --- proof of GPU (agent/PROOF.md) ------------------------------------------------------------

MAX_CHALLENGE_BODY = 512 * 1024
MAX_PATH = 64  # a tree of 2^64 leaves is far beyond any challenge


def _hex(value, length: int) -> bool:
    return (
        isinstance(value, str)
        and len(value) == length
        and all(c in "0123456789abcdef" for c in value)
    )


class ChallengeCommitView(AgentView):
    """POST /api/v1/agent/challenges/{id}/commit: the Merkle root, before the deadline."""

    @doc.CHALLENGE_COMMIT
    def post(self, request, challenge_id):
        node = authenticated_node(request)
        challenge = challenges.of_node(node, challenge_id)
        body = read_json_object(request, 4096)
        root, elapsed = body.get("root"), body.get("elapsed_s")
        errors = []
        if not _hex(root, 64):
            errors.append({"field": "root", "error": "64 lowercase hex digits"})
        if (
            isinstance(elapsed, bool)
            or not isinstance(elapsed, int | float)
            or not 0 <= elapsed <= 86400
        ):
            errors.append({"field": "elapsed_s", "error": "seconds, 0 to 86400"})
        if errors:
            raise ApiError(400, "validation_failed", "The commit has invalid fields.", errors)
        answer = challenges.commit(challenge, root, float(elapsed))
        return Response(answer, headers={"Cache-Control": "no-store"})


class ChallengeRevealView(AgentView):
    """POST /api/v1/agent/challenges/{id}/reveal: the requested rows' leaves and paths; a
    worker checks them (202)."""

    @doc.CHALLENGE_REVEAL
    def post(self, request, challenge_id):
        node = authenticated_node(request)
        challenge = challenges.of_node(node, challenge_id)
        body = read_json_object(request, MAX_CHALLENGE_BODY)
        items = body.get("rows")
        if not isinstance(items, list) or len(items) > challenge.checks:
            raise ApiError(
                400,
                "validation_failed",
                "The reveal has invalid fields.",
                [{"field": "rows", "error": f"a list of at most {challenge.checks} rows"}],
            )
        rows, errors = {}, []
        for index, item in enumerate(items):
            error = _reveal_error(item, challenge)
            if error:
                errors.append({"field": f"rows[{index}]", "error": error})
            else:
                rows[(item["round"], item["row"])] = (item["leaf"], item["path"])
        if errors:
            raise ApiError(400, "validation_failed", "The reveal has invalid rows.", errors)
        challenges.reveal(challenge, rows)
        return Response({"status": "revealed"}, status=202)


def _reveal_error(item, challenge) -> str:
    if not isinstance(item, dict):
        return "an object with round, row, leaf and path"
    r, i, leaf, path = (item.get(k) for k in ("round", "row", "leaf", "path"))
    if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < challenge.rounds:
        return f"round: 0 to {challenge.rounds - 1}"
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < challenge.n:
        return f"row: 0 to {challenge.n - 1}"
    if not _hex(leaf, 2 * LEAF_BYTES):
        return f"leaf: {2 * LEAF_BYTES} lowercase hex digits"
    if not isinstance(path, list) or len(path) > MAX_PATH or not all(_hex(h, 64) for h in path):
        return f"path: at most {MAX_PATH} hashes of 64 lowercase hex digits"
    return ""


# The protocol's text and test vectors, as the agent package publishes them (agent/), served
# for third-party agents that do not have this repository: read once, never from user input.
PROOF_DOCS = {
    "text": ("PROOF.md", "text/markdown; charset=utf-8"),
    "vectors": ("proof-vectors.json", "application/json"),
}


@functools.cache
def _proof_doc(name: str) -> bytes:
    return (settings.BASE_DIR / "agent" / PROOF_DOCS[name][0]).read_bytes()


class ProofDocView(AgentView):
    """GET /api/v1/agent/proof/{text,vectors}: agent/PROOF.md and its test vectors."""

    @doc.PROOF_DOC
    def get(self, request, name: str):
        if name not in PROOF_DOCS:
            raise ApiError(404, "not_found", "The documents are `text` and `vectors`.")
        response = HttpResponse(_proof_doc(name), content_type=PROOF_DOCS[name][1])
        response["Cache-Control"] = "public, max-age=3600"
        return response
