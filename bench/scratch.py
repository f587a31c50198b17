"""The scratch PostgreSQL database every bench loads and times in: its own, dropped first."""

from urllib.parse import urlsplit, urlunsplit

import psycopg


def url_of(admin_url: str, name: str) -> str:
    """The URL of database `name` on the server `admin_url` points at."""
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def create(admin_url: str, name: str) -> str:
    """Database `name`, empty (dropped first if it was there); its URL."""
    drop(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url_of(admin_url, name)


def drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def portal_env(database_url: str, cache_url: str, broker_url: str = "") -> dict:
    """The portal's environment as deployed (DEBUG off, quiet logs, no demo fleet) on a bench's
    own database, cache and broker: what its processes, or Django in the bench's own, run on."""
    env = {
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 60,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": database_url,
        "CACHE_URL": cache_url,
        "LOG_LEVEL": "WARNING",
        "DEMO_FLEET": "false",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
    }
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    return env


def setup_django(url: str) -> None:
    """Django on database `url` with the portal's settings (DEBUG, quiet logs), set up."""
    import os

    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DEBUG", "true")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
