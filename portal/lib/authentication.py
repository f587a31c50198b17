"""Session authentication for the JSON API that checks CSRF without parsing the body first."""

from contextlib import contextmanager

from django.core.exceptions import RequestDataTooBig
from django.http import UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from rest_framework.authentication import SessionAuthentication


@contextmanager
def unreadable_body_is_a_400():
    """The CSRF check reads a form body for its token; a broken one is the client's error."""
    # Imported here: DRF imports this module while its own views module is half loaded.
    from portal.lib.errors import ApiError

    try:
        yield
    except MultiPartParserError as exc:
        raise ApiError(400, "invalid_request", f"The form body cannot be parsed: {exc}") from None
    except UnreadablePostError:
        raise ApiError(400, "invalid_request", "The request body could not be read.") from None
    except RequestDataTooBig:
        raise ApiError(413, "body_too_large", "The request body is too large.") from None


class JsonSessionAuthentication(SessionAuthentication):
    """DRF's session auth, with the CSRF check run on Django's request.

    DRF's own check reads `request.POST` through DRF, which parses the whole body before any
    view could refuse it as too large; Django's request leaves a JSON body unread, and the
    token comes from the X-CSRFToken header as the pages send it.
    """

    def enforce_csrf(self, request):
        with unreadable_body_is_a_400():
            return super().enforce_csrf(getattr(request, "_request", request))
