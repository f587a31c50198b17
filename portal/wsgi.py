"""WSGI entry point: `gunicorn portal.wsgi`.

Requests to the agent API (`/api/v1/agent/`: machines with bearer tokens, ten thousand samples
a second at the design target) go through a handler with only the middleware that applies to
them: the HTTPS redirect and security headers, the NUL refusal and the 503 for a database that
is down. Sessions, CSRF, sign-in, messages, clickjacking headers and static files are for pages
and would only cost every report its share of a millisecond.
"""

import os

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

from portal.lib.recursion import restore_recursion_limit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

_site = get_wsgi_application()

from django.conf import settings  # noqa: E402 - configured by get_wsgi_application()

AGENT_API_PREFIX = "/api/v1/agent/"


class AgentApiHandler(WSGIHandler):
    """Django's handler with the middleware listed in settings.AGENT_API_MIDDLEWARE only."""

    def load_middleware(self, is_async=False):
        everything = settings.MIDDLEWARE
        settings.MIDDLEWARE = [m for m in everything if m in settings.AGENT_API_MIDDLEWARE]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = everything


_agents = AgentApiHandler()


def application(environ, start_response):
    # py-evm, imported by the first EIP-1271 check, raises the limit again in mid-life.
    restore_recursion_limit()
    if environ.get("PATH_INFO", "").startswith(AGENT_API_PREFIX):
        return _agents(environ, start_response)
    return _site(environ, start_response)
