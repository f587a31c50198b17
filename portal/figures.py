"""Embedding a plotly figure in a page as JSON that no string inside it can break out of."""

from django.utils.safestring import SafeString, mark_safe

# The same escapes as Django's json_script: a GPU or node name is the agent's text.
_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}


def embed(figure) -> SafeString:
    return mark_safe(figure.to_json().translate(_ESCAPES))  # noqa: S308 - escaped just above
