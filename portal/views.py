"""The site shell's pages, the health endpoint and /metrics for Prometheus."""

import ipaddress
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from contributors import charts
from contributors.models import GPU, Sample
from contributors.verification import challenges
from portal import health, metrics
from portal.lib.client_ip import client_ip
from portal.lib.figures import embed
from portal.lib.times import rfc3339
from rewards.models import RewardEntry
from rewards.wei import sum_wei

log = logging.getLogger(__name__)


@require_GET
def landing(request):
    return render(request, "portal/landing.html")


@never_cache
@require_GET
def healthz(request):
    """200 when the database, broker and cache all answer; 503 when one does not.

    The public sees ok/down per part only: hosts, error messages and latencies tell an attacker
    what runs where. They go to the log when a part is down, and to signed-in staff. The
    worker's heartbeat is shown to staff but does not fail the check: a web node stays useful
    to a load balancer while workers restart, and the agents' batches wait in the database.
    """
    checks = health.run_checks()
    down = sorted(name for name, check in checks.items() if not check.ok)
    body = {
        "status": "down" if down else "ok",
        "parts": {name: "ok" if check.ok else "down" for name, check in checks.items()},
    }
    details = {name: check.as_dict() for name, check in checks.items()}
    if down:
        log.warning("healthz: %s down: %s", ", ".join(down), details)
    if _is_staff(request):
        age = health.worker_heartbeat_age_s() if checks["cache"].ok else None
        body["checks"] = details
        body["worker"] = {
            "last_heartbeat_age_s": None if age is None else round(age, 1),
            "fresh": age is not None and age <= 3 * settings.WORKER_HEARTBEAT_S,
        }
        relayer = health.relayer_status()
        if relayer is not None:
            body["relayer"] = relayer  # the gasless-claim relayer's address and balance
    return JsonResponse(body, status=503 if down else 200)


def _is_staff(request) -> bool:
    # Only a request with a session cookie costs a session lookup: a load balancer's never
    # does, and a database that is down makes anyone the public.
    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return False
    try:
        return request.user.is_active and request.user.is_staff
    except DatabaseError:
        return False


@never_cache
@require_GET
def prometheus_metrics(request):
    """GET /metrics for Prometheus: 404 unless METRICS_TOKEN is set (as if there were no such
    page), 403 from outside METRICS_ALLOWED_NETWORKS, 401 without the token. Refusals say
    nothing of the metrics."""
    if not settings.METRICS_TOKEN:
        raise Http404
    if settings.METRICS_ALLOWED_NETWORKS and not _in_networks(
        client_ip(request), settings.METRICS_ALLOWED_NETWORKS
    ):
        return HttpResponse("Not from this address.\n", status=403, content_type="text/plain")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # Compared in constant time, as bytes (compare_digest refuses str with non-ASCII).
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        token.strip().encode(), settings.METRICS_TOKEN.encode()
    ):
        response = HttpResponse(
            "Send the metrics token as 'Authorization: Bearer …'.\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics.exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)


def _in_networks(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:  # a dual-stack socket's view of an IPv4 client
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


@require_GET
def dashboard(request):
    """The contributor's day-to-day page: cards, a live utilization chart, the GPU table."""

    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    now = timezone.now()
    gpus = list(
        GPU.objects.filter(node__owner=request.user)
        .select_related("node")
        .order_by("node__name", "node_id", "uuid")
    )
    standing = challenges.standing(sorted({gpu.mig_parent_id or gpu.pk for gpu in gpus}), now)
    rows = [
        {
            "gpu": gpu,
            "status": gpu.status(now),
            "standing": standing.get(gpu.mig_parent_id or gpu.pk),
        }
        for gpu in gpus
    ]
    unverified = [row for row in rows if row["standing"] and not row["standing"].verified]
    since = now - timedelta(minutes=settings.DASHBOARD_LIVE_MINUTES)
    recent: dict[int, list] = {gpu.pk: [] for gpu in gpus}
    for gpu_id, ts, util in (
        Sample.objects.filter(gpu__node__owner=request.user, ts__gte=since)
        .order_by("ts")
        .values_list("gpu_id", "ts", "utilization_gpu_pct")
    ):
        recent[gpu_id].append((rfc3339(ts), util))
    figure = charts.live_utilization(
        # Eight identical H100s on one machine are told apart by the end of their uuid.
        [
            (gpu.uuid, f"{gpu.node.name} · {gpu.name} …{gpu.uuid[-4:]}", recent[gpu.pk])
            for gpu in gpus
        ]
    )
    earned_24h = sum_wei(
        RewardEntry.objects.filter(contributor=request.user, epoch__start__gte=now - timedelta(1)),
        "amount_wei",
    )
    return render(
        request,
        "portal/dashboard.html",
        {
            "rows": rows,
            "online": sum(1 for row in rows if row["status"] == "online"),
            "unverified": unverified,
            "earned_24h": earned_24h,
            "figure": embed(figure),
            "live_ms": settings.DASHBOARD_REFRESH_S * 1000,
        },
    )
