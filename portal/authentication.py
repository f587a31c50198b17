"""Session authentication for the JSON API that checks CSRF without parsing the body first."""

from rest_framework.authentication import SessionAuthentication


class JsonSessionAuthentication(SessionAuthentication):
    """DRF's session auth, with the CSRF check run on Django's request.

    DRF's own check reads `request.POST` through DRF, which parses the whole body before any
    view could refuse it as too large; Django's request leaves a JSON body unread, and the
    token comes from the X-CSRFToken header as the pages send it.
    """

    def enforce_csrf(self, request):
        return super().enforce_csrf(getattr(request, "_request", request))
