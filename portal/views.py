"""The site shell's pages and the health endpoint."""

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from portal import health


@require_GET
def landing(request):
    return render(request, "portal/landing.html")


@never_cache
@require_GET
def healthz(request):
    """200 when the database, broker and cache all answer; 503 naming the ones that do not.

    The worker's heartbeat is reported but does not fail the check: a web node stays useful to
    a load balancer while workers restart, and the agents' batches wait safely in the database.
    """
    checks = health.run_checks()
    down = sorted(name for name, check in checks.items() if not check.ok)
    age = health.worker_heartbeat_age_s()
    body = {
        "status": "ok" if not down else "unavailable",
        "down": down,
        "checks": {name: check.as_dict() for name, check in checks.items()},
        "worker": {
            "last_heartbeat_age_s": None if age is None else round(age, 1),
            "fresh": age is not None and age <= 3 * settings.WORKER_HEARTBEAT_S,
        },
    }
    return JsonResponse(body, status=503 if down else 200)
