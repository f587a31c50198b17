"""Periodic housekeeping of the contributors app."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from contributors.models import SignInNonce


@shared_task(name="contributors.prune_signin_nonces", ignore_result=True)
def prune_signin_nonces() -> int:
    """Delete nonces past their lifetime; a spent or expired nonce can never sign in again."""
    cutoff = timezone.now() - timedelta(seconds=settings.SIWE_NONCE_TTL_S * 2)
    deleted, _ = SignInNonce.objects.filter(issued_at__lt=cutoff).delete()
    return deleted
