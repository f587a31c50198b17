"""The portal's settings for `collectstatic` only, with plotly.js found by a finder whose
storage opens files as Django `File`s.

Used only when `collectstatic` fails with the portal's own settings: with DEBUG=false,
`CompressedManifestStaticFilesStorage` hashes every file through `content.chunks()`, and
`portal.staticfinders._SingleFileStorage.open` returns a plain file object, which has none.
run.py says in its output when it needed this.
"""

from django.core.files import File

from portal.settings import *  # noqa: F403
from portal.settings import STATICFILES_FINDERS
from portal.staticfinders import PlotlyJsFinder, _SingleFileStorage


class _FileStorage(_SingleFileStorage):
    def open(self, name, mode="rb"):
        return File(open(self._source, mode))  # collectstatic closes it


class BenchPlotlyJsFinder(PlotlyJsFinder):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.storage = _FileStorage(self.source, self.storage._name)


STATICFILES_FINDERS = [
    "collect_settings.BenchPlotlyJsFinder" if f.endswith("PlotlyJsFinder") else f
    for f in STATICFILES_FINDERS
]
