"""Serve plotly.js from the pinned plotly package as `vendor/plotly.min.js`.

The pages load plotly.js from our own static files, never a CDN. Taking it from the Python
package keeps the browser library and plotly.py (which builds the figures) the same version,
without committing a 4 MB file.
"""

from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files import File
from django.core.files.storage import FileSystemStorage

PLOTLY_JS_PATH = "vendor/plotly.min.js"


class _SingleFileStorage(FileSystemStorage):
    """Storage that exposes one file of a package under a chosen name."""

    def __init__(self, source: Path, name: str) -> None:
        super().__init__(location=str(source.parent))
        self._source = source
        self._name = name

    def path(self, name: str) -> str:
        return str(self._source)

    def open(self, name, mode="rb"):
        # A Django File: collectstatic's hashing storages read it with .chunks().
        return File(open(self._source, mode), name=self._name)

    def exists(self, name: str) -> bool:
        return name == self._name

    def size(self, name: str) -> int:
        return self._source.stat().st_size

    def get_modified_time(self, name):
        return super().get_modified_time(self._source.name)


class PlotlyJsFinder(BaseFinder):
    """A staticfiles finder that yields plotly.min.js from the installed plotly package."""

    def __init__(self, *args, **kwargs) -> None:
        source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        self.source = source
        self.storage = _SingleFileStorage(source, PLOTLY_JS_PATH)

    def check(self, **kwargs):
        from django.core.checks import Error

        if not self.source.exists():
            return [Error(f"plotly.js not found at {self.source}", id="portal.E001")]
        return []

    def find(self, path: str, find_all: bool = False, **kwargs):
        if path == PLOTLY_JS_PATH:
            return [str(self.source)] if find_all else str(self.source)
        return []

    def list(self, ignore_patterns):
        yield PLOTLY_JS_PATH, self.storage
