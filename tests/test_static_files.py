"""Static files as production serves them, in the demo too: `collectstatic` with the production
storage (it failed on plotly.js before), then a real gunicorn hands out plotly.js compressed,
under its hashed name, cacheable for a year, and the pages link the hashed names."""

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.processes import BASE_DIR, database_url_for_test_db, free_port, tail, wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

STRONG_KEY = "k" + "".join(chr(33 + (i * 7) % 90) for i in range(60))


def env_for(static_root: Path, **extra) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": database_url_for_test_db(),
        "STATIC_ROOT": str(static_root),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Path:
    """collectstatic in production configuration (DEBUG off, the manifest storage)."""
    root = tmp_path_factory.mktemp("static")
    done = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=BASE_DIR,
        env=env_for(root, DEBUG="false", SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS="127.0.0.1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def hashed(root: Path, name: str) -> str:
    return json.loads((root / "staticfiles.json").read_text())["paths"][name]


def test_collectstatic_writes_plotly_hashed_with_gzip_and_brotli(collected):
    assert not (collected / "vendor/plotly-basic.min.js").exists()  # hashed names only
    name = hashed(collected, "vendor/plotly-basic.min.js")
    assert re.fullmatch(r"vendor/plotly-basic\.min\.[0-9a-f]{12}\.js", name)
    plain = (collected / name).stat().st_size
    assert plain > 1_000_000
    gzipped = (collected / f"{name}.gz").stat().st_size
    assert (collected / f"{name}.br").stat().st_size < gzipped < plain / 2.5


@pytest.fixture
def demo_server(collected, tmp_path):
    """gunicorn as `make run` starts it: DEBUG on, static files served as collected."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", "1"],
            cwd=BASE_DIR, env=env_for(collected, DEBUG="true", STATIC_MANIFEST="true"),
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, tail(log)
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5):  # noqa: S310 - loopback
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    wait_for(answers, 60, message=f"gunicorn never answered:\n{tail(log)}")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def fetch(url: str, encodings: str) -> tuple[dict, bytes]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": encodings})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        return {k.lower(): v for k, v in response.headers.items()}, response.read()


def test_plotly_goes_out_compressed_and_cached_for_a_year(collected, demo_server):
    name = hashed(collected, "vendor/plotly-basic.min.js")
    for encodings, expected in (("br, gzip", "br"), ("gzip", "gzip")):
        headers, body = fetch(f"{demo_server}/static/{name}", encodings)
        assert headers["content-encoding"] == expected
        assert len(body) < 450_000
        assert "immutable" in headers["cache-control"]
        assert int(re.search(r"max-age=(\d+)", headers["cache-control"]).group(1)) >= 31_536_000
    headers, body = fetch(f"{demo_server}/static/{name}", "identity")
    assert "content-encoding" not in headers
    assert body == (collected / name).read_bytes()


def test_pages_link_the_hashed_names(collected, demo_server):
    _, page = fetch(f"{demo_server}/estimate/", "identity")
    css = hashed(collected, "css/site.css")
    assert f"/static/{css}".encode() in page
