"""Plotly figures and text that others chose: labels that stay text, JSON that stays data.

plotly.js draws every label (trace names, hover text, annotations, titles) through its own
small HTML reader: `<a href>`, `<b>`, `<br>`, `<span style>` and friends become markup, and
`&lt;`-style entities become the characters they name. A GPU name, a hostname or a job id is
the agent's text, so it goes into a figure through `plotly_text`, and the page embeds the figure
through `embed`.
"""

from django.utils.safestring import SafeString, mark_safe

# plotly.js first fills `%{...}` templates in a label (trace names and annotations too: `%{meta}`
# is the trace's meta), then splits it into tags at `<` and `>`, and only then decodes entities:
# written as entities, these characters survive both steps as text. Quotes need nothing, since
# an attribute only exists inside a tag and no tag can start without `<`; html.escape would
# write `&quot;`, which plotly.js does not decode.
_LABEL_ESCAPES = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord("%"): "&#37;"}

# The same escapes as Django's json_script, so nothing in the JSON closes its <script> element.
_JSON_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}


def plotly_text(value: str) -> str:
    """`value` as a plotly.js label that shows exactly these characters, markup included."""
    return str(value).translate(_LABEL_ESCAPES)


def embed(figure) -> SafeString:
    """The figure's JSON for a `<script type="application/json">` element."""
    return mark_safe(figure.to_json().translate(_JSON_ESCAPES))  # noqa: S308 - escaped just above
