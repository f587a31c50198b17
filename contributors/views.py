"""Pages of the contributor's own: signing in, wallets, machines and one GPU's history."""

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from contributors import charts
from contributors.models import GPU, Challenge, EnrollmentCode, GpuHour, Node
from contributors.profile import PublicProfileForm, save_public_profile
from contributors.series import RANGES, series
from contributors.verification import challenges
from portal import agent_dist
from portal.demo import DEMO_CONTRIBUTORS, demo_runs
from portal.lib.figures import embed
from portal.lib.times import rfc3339, rfc3339_or_none
from rewards.models import Epoch, HeldOut, Job, RewardEntry


@require_GET
@ensure_csrf_cookie
def signin_page(request):
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = ""
    if request.user.is_authenticated and not request.GET.get("switch"):
        return redirect(next_url or "dashboard")

    demo = DEMO_CONTRIBUTORS if demo_runs() else ()
    return render(
        request,
        "contributors/signin.html",
        {"next_url": next_url or "/dashboard/", "demo_names": demo},
    )


@require_GET
@ensure_csrf_cookie
@login_required
def wallets_page(request):
    return _wallets_page(request, PublicProfileForm(instance=request.user))


def _wallets_page(request, profile_form, status: int = 200):
    return render(
        request,
        "contributors/wallets.html",
        {"wallets": list(request.user.wallets.all()), "profile_form": profile_form},
        status=status,
    )


@require_POST
@login_required
def public_profile(request):
    """The wallets page's form: display name and how the public leaderboard lists them."""
    form = PublicProfileForm(request.POST, instance=request.user)
    if not form.is_valid() or not save_public_profile(form):
        request.user.refresh_from_db()  # the page around the form shows what is stored
        return _wallets_page(request, form, status=400)
    messages.success(
        request, f"Saved: {request.user.get_leaderboard_display()} on the public leaderboard."
    )
    return redirect("wallets")


# --- Machines --------------------------------------------------------------------------------


@require_GET
@login_required
def nodes_page(request):
    return _nodes_page(request)


def _nodes_page(request, secret: dict | None = None):
    """The machines page; with `secret`, the answer to the POST that made it.

    A secret is shown in that answer only, never parked in the session (a table that backups
    and admins read) or in a cookie to survive a redirect; the answer is never cached. Reloading
    it asks to resend the form, which makes a new secret, as it should.
    """
    now = timezone.now()
    nodes = (
        Node.objects.filter(owner=request.user)
        .prefetch_related(Prefetch("gpus", queryset=GPU.objects.order_by("uuid")))
        .order_by("revoked_at", "name", "id")
    )
    rows = [
        {
            "node": node,
            "status": node.status(now),
            "gpus": [{"gpu": gpu, "status": gpu.status(now)} for gpu in node.gpus.all()],
        }
        for node in nodes
    ]
    response = render(
        request,
        "contributors/nodes.html",
        {
            "rows": rows,
            "secret": secret,
            "portal_url": request.build_absolute_uri("/").rstrip("/"),
            # The one-line install is offered once the portal has built the agent it serves.
            "agent": agent_dist.published() if secret else None,
        },
    )
    if secret is not None:
        add_never_cache_headers(response)
    return response


@require_POST
@login_required
def create_enrollment_code(request):
    row, code = EnrollmentCode.issue(request.user)
    return _nodes_page(request, {"kind": "enrollment", "value": code, "expires_at": row.expires_at})


def _own_node(request, node_id: int):

    return get_object_or_404(Node, pk=node_id, owner=request.user)


@require_POST
@login_required
def revoke_node(request, node_id: int):
    node = _own_node(request, node_id)
    node.revoke()
    messages.success(request, f"{node.name} can no longer report. Its history stays.")
    return redirect("nodes")


@require_POST
@login_required
def rotate_node_token(request, node_id: int):

    node = _own_node(request, node_id)
    if node.is_revoked:
        messages.error(request, f"{node.name} is revoked; add it again as a new machine.")
        return redirect("nodes")
    token = node.set_new_token()
    Node.objects.filter(pk=node.pk).update(
        token_prefix=node.token_prefix, token_hash=node.token_hash
    )
    return _nodes_page(request, {"kind": "token", "value": token, "node": node.name})


@require_POST
@login_required
def gpu_settings(request, uuid: str):

    gpu = get_object_or_404(GPU, uuid=uuid, node__owner=request.user)
    raw = request.POST.get("committed_memory_mib", "").strip()
    if raw == "":
        committed = None
    else:
        try:
            committed = int(raw)
        except ValueError:
            committed = -1
        if not 0 <= committed <= gpu.memory_total_mib:
            messages.error(
                request,
                f"Committed memory for {gpu.name} must be between 0 and "
                f"{gpu.memory_total_mib} MiB (or empty for all of it).",
            )
            return redirect("nodes")
    gpu.committed_memory_mib = committed
    gpu.enabled = request.POST.get("enabled") == "on"
    gpu.save(update_fields=["committed_memory_mib", "enabled"])
    state = "in the network" if gpu.enabled else "out of the network"
    messages.success(request, f"{gpu.name}: {gpu.effective_committed_mib} MiB committed, {state}.")
    return redirect("nodes")


def _paid_periods(gpu, jobs: list, since, now) -> list[tuple[str, str, str]]:
    """What the history shades: attested jobs (compute) and every idle payment in the range."""
    paid_idle = RewardEntry.objects.filter(gpu=gpu, kind="idle", epoch__end__gte=since)
    return [
        (rfc3339(max(job.started_at, since)), rfc3339(job.ended_at or now), "compute")
        for job in jobs
    ] + [
        (rfc3339(start), rfc3339(end), "idle")
        for start, end, amount in paid_idle.values_list("epoch__start", "epoch__end", "amount_wei")
        if amount > 0
    ]


def _online_per_day(gpu, now) -> list[tuple[str, float]]:
    days: dict[str, float] = defaultdict(float)
    hours = GpuHour.objects.filter(gpu=gpu, start__gte=now - timedelta(days=30))
    for start, online in hours.values_list("start", "online_s"):
        days[start.date().isoformat()] += online
    return sorted(days.items())


def _gpu_ledger(gpu) -> list:
    """The GPU's entries and held-out rows of the last 24 settled epochs, newest first."""
    last_epochs = list(Epoch.objects.filter(status=Epoch.Status.SETTLED).order_by("-start")[:24])
    by_epoch: dict = {}
    for entry in RewardEntry.objects.filter(gpu=gpu, epoch__in=last_epochs).select_related("epoch"):
        by_epoch.setdefault(entry.epoch, {})[entry.kind] = entry
    for row in HeldOut.objects.filter(gpu=gpu, epoch__in=last_epochs).select_related("epoch"):
        by_epoch.setdefault(row.epoch, {})["held_out"] = row
    return sorted(by_epoch.items(), key=lambda item: item[0].start, reverse=True)


def verification_of(gpu, now) -> dict | None:
    """What the GPU page says of its proof-of-GPU state: standing, the last pass, the open
    challenge, recent failures and why. None when verification is off."""
    if not challenges.enabled():
        return None
    physical = gpu.mig_parent or gpu
    standing = challenges.standing([physical.pk], now)[physical.pk]
    recent = list(
        Challenge.objects.filter(gpu=physical)
        .exclude(status=Challenge.Status.CANCELLED)
        .order_by("-issued_at")[:8]
    )
    last_pass = next((c for c in recent if c.status == Challenge.Status.PASSED), None)
    if last_pass is None:
        last_pass = (
            Challenge.objects.filter(gpu=physical, status=Challenge.Status.PASSED)
            .order_by("-decided_at")
            .first()
        )
    return {
        "physical": physical,
        "standing": standing,
        "last_pass": last_pass,
        "open": next((c for c in recent if c.is_open), None),
        "recent": recent,
        "valid_until": last_pass.decided_at + timedelta(seconds=settings.GPU_VERIFICATION_VALID_S)
        if last_pass
        else None,
    }


@require_GET
@login_required
def gpu_page(request, uuid: str):
    """One GPU: its history over a chosen range, what earned rewards, uptime, its ledger."""
    gpu = GPU.objects.select_related("node").filter(uuid=uuid, node__owner=request.user).first()
    if gpu is None:
        raise Http404("You have no GPU with this uuid.")
    range_name = request.GET.get("range", "24h")
    if range_name not in RANGES:
        range_name = "24h"
    now = timezone.now()
    since = now - RANGES[range_name].span
    data = series(gpu, range_name, now)

    jobs = list(
        Job.objects.filter(Q(gpu=gpu) | Q(gpu__mig_parent=gpu))
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=since), started_at__lte=now)
        .order_by("-started_at")[:50]
    )
    figure = charts.gpu_history(
        data["points"],
        memory_total_mib=gpu.memory_total_mib,
        x_range=(rfc3339(since), rfc3339(now)),
        gap_s=max(2.5 * data["resolution_s"], settings.COVERAGE_MAX_GAP_S),
        periods=_paid_periods(gpu, jobs, since, now),
        jobs=[(rfc3339(j.started_at), rfc3339_or_none(j.ended_at), j.job_id) for j in jobs[:12]
              if j.started_at >= since],
    )  # fmt: skip
    uptime = charts.uptime_per_day(_online_per_day(gpu, now))
    ledger = _gpu_ledger(gpu)
    verification = verification_of(gpu, now)
    return render(
        request,
        "contributors/gpu.html",
        {
            "gpu": gpu,
            "status": gpu.status(now),
            "range_name": range_name,
            "ranges": list(RANGES),
            "figure": embed(figure),
            "uptime": embed(uptime),
            "ledger": ledger,
            "points": len(data["points"]),
            "source": data["source"],
            "resolution_s": data["resolution_s"],
            "verification": verification,
        },
    )
