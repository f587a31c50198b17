"""/agent/: the node agent as the portal hands it out, for the one-line install.

    curl -fsSL https://portal.example/agent/install.sh | sh -s -- --code ABCD-1234

/agent/                      JSON index: version, wheel filename, sha256, URLs, the command
/agent/<wheel>               the wheel `manage.py build_agent` built (portal/agent_dist.py)
/agent/SHA256SUMS            checksums of the wheel and the unit (`sha256sum -c` format)
/agent/omnitensor-agent.service   the systemd unit (agent/omnitensor-agent.service)
/agent/install.sh            the install script (portal/agent_install.sh) with this portal's URL

A file is served only under an exact name that SHA256SUMS lists: the URL never becomes a path.
Before the build every one of them but install.sh answers 404 saying so; install.sh is always
there, and stops with that message when it finds no SHA256SUMS (a 404 for it would reach
`curl -fsSL … | sh` as an empty script that succeeds).
"""

import functools
import hashlib
import shlex
from pathlib import Path

from django.http import FileResponse, HttpResponse, HttpResponseNotFound, JsonResponse
from django.urls import path
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.http import http_date
from django.views.decorators.http import require_safe

from portal import agent_dist

INSTALL_SCRIPT = Path(__file__).resolve().parent / "agent_install.sh"
PORTAL_URL_LINE = "PORTAL_URL=__PORTAL_URL__\n"
NOT_BUILT = (
    "The OmniTensor agent has not been built on this portal yet. Its operator builds it with "
    "`python manage.py build_agent` (deploys run it like collectstatic).\n"
)


def portal_url(request) -> str:
    """This portal's absolute URL as the request reached it (Host checked by ALLOWED_HOSTS;
    https behind a proxy that says so, see SECURE_PROXY_SSL_HEADER)."""
    return request.build_absolute_uri("/").rstrip("/")


def install_command(base_url: str, code: str = "ABCD-1234") -> str:
    return f"curl -fsSL {base_url}/agent/install.sh | sh -s -- --code {code}"


def _not_built() -> HttpResponse:
    return HttpResponseNotFound(NOT_BUILT, content_type="text/plain; charset=utf-8")


def _revalidated(response: HttpResponse, etag: str) -> HttpResponse:
    """Caches may keep it but must ask again each time (a rebuild may change the bytes under
    the same name); the ETag makes asking cheap."""
    response["ETag"] = etag
    patch_cache_control(response, public=True, no_cache=True)
    return response


def _conditional(request, etag: str, last_modified: float | None = None):
    """A 304 (or 412) when the client's copy is current, else None."""
    response = get_conditional_response(request, etag=etag, last_modified=last_modified)
    return None if response is None else _revalidated(response, etag)


@require_safe
def index(request):
    built = agent_dist.published()
    if built is None:
        return JsonResponse({"error": "agent_not_built", "detail": NOT_BUILT.strip()}, status=404)
    try:
        size = (built.directory / built.wheel).stat().st_size
    except OSError:  # listed but gone: a build is replacing it
        return JsonResponse({"error": "agent_not_built", "detail": NOT_BUILT.strip()}, status=404)
    base = portal_url(request)
    body = {
        "version": built.version,
        "filename": built.wheel,
        "sha256": built.sha256,
        "size": size,
        "url": f"{base}/agent/{built.wheel}",
        "sha256sums_url": f"{base}/agent/{agent_dist.SUMS}",
        "install_url": f"{base}/agent/install.sh",
        "unit_url": f"{base}/agent/{agent_dist.UNIT}",
        "install_command": install_command(base),
    }
    response = JsonResponse(body)
    etag = f'"{hashlib.sha256(response.content).hexdigest()}"'
    if (not_modified := _conditional(request, etag)) is not None:
        return not_modified
    response["Content-Length"] = str(len(response.content))
    return _revalidated(response, etag)


@require_safe
def sha256sums(request):
    built = agent_dist.published()
    if built is None:
        return _not_built()
    return _file(request, built, agent_dist.SUMS, "text/plain; charset=utf-8")


@require_safe
def unit(request):
    built = agent_dist.published()
    if built is None or agent_dist.UNIT not in built.files:
        return _not_built()
    return _file(request, built, agent_dist.UNIT, "text/plain; charset=utf-8")


@require_safe
def wheel(request, filename: str):
    built = agent_dist.published()
    if built is None:
        return _not_built()
    if filename != built.wheel:
        return HttpResponseNotFound(
            f"No such file. This portal serves the agent {built.version} as {built.wheel}.\n",
            content_type="text/plain; charset=utf-8",
        )
    return _file(request, built, built.wheel, "application/octet-stream", attachment=True)


def _file(request, built, name: str, content_type: str, *, attachment: bool = False):
    where = built.path(name)  # SHA256SUMS itself and the names it lists, nothing else
    if where is None:
        return _not_built()
    try:
        handle = where.open("rb")
        stat = where.stat()
    except OSError:  # replaced by a build since SHA256SUMS was read
        return _not_built()
    # The checksum is the identity of a listed file; SHA256SUMS is identified by its size and
    # time of writing (a new build replaces it whole).
    etag = (
        f'"{built.files[name]}"' if name in built.files else f'"{stat.st_size}-{stat.st_mtime_ns}"'
    )
    if (not_modified := _conditional(request, etag, stat.st_mtime)) is not None:
        handle.close()
        return not_modified
    response = FileResponse(
        handle, content_type=content_type, as_attachment=attachment, filename=name
    )
    response["Content-Length"] = str(stat.st_size)  # FileResponse sets it; say so plainly
    response["Last-Modified"] = http_date(stat.st_mtime)
    return _revalidated(response, etag)


@functools.cache
def _script_template() -> str:
    text = INSTALL_SCRIPT.read_text()
    if text.count(PORTAL_URL_LINE) != 1:
        raise RuntimeError(f"{INSTALL_SCRIPT} must hold the line {PORTAL_URL_LINE!r} once")
    return text


def render_install_script(base_url: str) -> str:
    return _script_template().replace(PORTAL_URL_LINE, f"PORTAL_URL={shlex.quote(base_url)}\n")


@require_safe
def install_script(request):
    body = render_install_script(portal_url(request)).encode()
    etag = f'"{hashlib.sha256(body).hexdigest()}"'
    if (not_modified := _conditional(request, etag)) is not None:
        return not_modified
    # text/plain, so that a browser shows it: read it before you pipe it into sh.
    response = HttpResponse(body, content_type="text/plain; charset=utf-8")
    response["Content-Length"] = str(len(body))
    response["Content-Disposition"] = 'inline; filename="install.sh"'
    return _revalidated(response, etag)


urlpatterns = [
    path("", index, name="agent-index"),
    path("install.sh", install_script, name="agent-install"),
    path(agent_dist.SUMS, sha256sums, name="agent-sha256sums"),
    path(agent_dist.UNIT, unit, name="agent-unit"),
    path("<str:filename>", wheel, name="agent-wheel"),
]
