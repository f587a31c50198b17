"""Pages of the contributor's own: signing in and managing wallets."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST


@require_GET
@ensure_csrf_cookie
def signin_page(request):
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = ""
    if request.user.is_authenticated and not request.GET.get("switch"):
        return redirect(next_url or "nodes")
    from django.conf import settings

    from portal.demo import DEMO_CONTRIBUTORS

    demo = DEMO_CONTRIBUTORS if settings.DEBUG and settings.DEMO_FLEET else ()
    return render(
        request,
        "contributors/signin.html",
        {"next_url": next_url or "/nodes/", "demo_names": demo},
    )


@require_GET
@ensure_csrf_cookie
@login_required
def wallets_page(request):
    return render(
        request, "contributors/wallets.html", {"wallets": list(request.user.wallets.all())}
    )


# --- Machines --------------------------------------------------------------------------------

SHOW_ONCE = "nodes:show-once"


@require_GET
@login_required
def nodes_page(request):
    from django.db.models import Prefetch
    from django.utils import timezone

    from contributors.models import GPU, Node

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
    secret = request.session.pop(SHOW_ONCE, None)
    return render(
        request,
        "contributors/nodes.html",
        {
            "rows": rows,
            "secret": secret,
            "portal_url": request.build_absolute_uri("/").rstrip("/"),
        },
    )


@require_POST
@login_required
def create_enrollment_code(request):
    from contributors.models import EnrollmentCode

    row, code = EnrollmentCode.issue(request.user)
    request.session[SHOW_ONCE] = {
        "kind": "enrollment",
        "value": code,
        "expires_at": row.expires_at.isoformat(),
    }
    return redirect("nodes")


def _own_node(request, node_id: int):
    from django.shortcuts import get_object_or_404

    from contributors.models import Node

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
    from contributors.models import Node

    node = _own_node(request, node_id)
    if node.is_revoked:
        messages.error(request, f"{node.name} is revoked; add it again as a new machine.")
        return redirect("nodes")
    token = node.set_new_token()
    Node.objects.filter(pk=node.pk).update(
        token_prefix=node.token_prefix, token_hash=node.token_hash
    )
    request.session[SHOW_ONCE] = {"kind": "token", "value": token, "node": node.name}
    return redirect("nodes")


@require_POST
@login_required
def gpu_settings(request, uuid: str):
    from django.shortcuts import get_object_or_404

    from contributors.models import GPU

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
