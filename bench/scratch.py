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
