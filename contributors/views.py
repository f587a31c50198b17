"""Pages of the contributor's own: signing in and managing wallets."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET


@require_GET
@ensure_csrf_cookie
def signin_page(request):
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = ""
    if request.user.is_authenticated and not request.GET.get("switch"):
        return redirect(next_url or "wallets")
    return render(request, "contributors/signin.html", {"next_url": next_url or "/wallets/"})


@require_GET
@ensure_csrf_cookie
@login_required
def wallets_page(request):
    return render(
        request, "contributors/wallets.html", {"wallets": list(request.user.wallets.all())}
    )
