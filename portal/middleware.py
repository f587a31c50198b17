"""Requests no view should ever see."""

from urllib.parse import unquote

from portal.api_errors import json_error


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
