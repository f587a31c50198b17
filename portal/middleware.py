"""Requests no view should ever see."""

import logging
from urllib.parse import unquote

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse

from portal.lib.errors import json_error

log = logging.getLogger(__name__)


class RejectNulMiddleware:
    """A NUL in the path or query is never a real request, and PostgreSQL cannot compare it.

    Refusing it here answers 400 on every URL, instead of each view having to remember.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "\x00" in unquote(query):
            return json_error(400, "invalid_request", "The URL holds a NUL character.")
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """A database that is restarting, unreachable or aborting a transaction answers 503.

    Persistent connections are not pinged before each request (that would be one more round
    trip on every telemetry report); a connection the database dropped fails on first use
    instead, Django discards it at the end of that request, and the next one connects afresh.
    That one request, and any made while the database is down, get a 503 with Retry-After:
    agents retry it, and nothing was accepted that could be lost.
    """

    RETRY_AFTER_S = 5

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        log.warning("database unavailable for %s %s: %s", request.method, request.path, exception)
        if request.path.startswith(("/api/", "/auth/")):
            response = json_error(
                503, "database_unavailable", "The database is not answering; try again shortly."
            )
        else:
            response = HttpResponse(
                "The portal cannot reach its database right now; try again in a few seconds.",
                status=503,
                content_type="text/plain; charset=utf-8",
            )
        response["Retry-After"] = str(self.RETRY_AFTER_S)
        return response
