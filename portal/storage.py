"""The static files storage of a collected deployment (STATIC_MANIFEST)."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class CollectedStaticStorage(CompressedManifestStaticFilesStorage):
    """Hashed names, gzip and Brotli copies (WhiteNoise), and hashed URLs even with DEBUG on.

    Django's manifest storage links the plain names while DEBUG is on, and WhiteNoise caches
    only hashed names for long, so the demo (`make run`, DEBUG on) would send plotly.js with
    `max-age=0` on every page; forcing the hashed URL serves it as production does.
    """

    def url(self, name, force=False):
        return super().url(name, force=True)
