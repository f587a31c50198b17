"""The OmniTensor contributor portal project: settings, urls, the Celery app, the site shell."""

from .celery_app import app as celery_app

__all__ = ("celery_app",)
