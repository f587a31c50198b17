"""/agent/: the portal serves the node agent it builds (`manage.py build_agent`), its checksums,
its systemd unit and the install script; nothing before the build, and only files it listed."""

import hashlib
import io
import re
import shutil
import subprocess
import zipfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

from portal import agent_dist
from portal.agent_views import render_install_script
from tests.support.siwe import ALICE, sign_in

pytestmark = pytest.mark.django_db

VERSION = agent_dist.agent_version()
WHEEL = f"omnitensor_agent-{VERSION}-py3-none-any.whl"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The agent built once for the module, as `manage.py build_agent` builds it."""
    directory = tmp_path_factory.mktemp("agent-dist")
    out = StringIO()
    call_command("build_agent", output=directory, stdout=out)
    assert out.getvalue().startswith(f"Built {directory / WHEEL} (agent {VERSION}, sha256 ")
    return directory


@pytest.fixture
def served(built, settings) -> Path:
    settings.AGENT_DIST_DIR = built
    return built


@pytest.fixture
def not_built(tmp_path, settings) -> Path:
    settings.AGENT_DIST_DIR = tmp_path / "nothing-here"
    return settings.AGENT_DIST_DIR


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# --- the build -----------------------------------------------------------------------------


def test_the_build_lists_the_wheel_and_the_unit_in_sha256sums(built):
    sums = (built / "SHA256SUMS").read_text().splitlines()
    assert sorted(p.name for p in built.iterdir() if not p.name.startswith(".")) == sorted(
        ["SHA256SUMS", "omnitensor-agent.service", WHEEL]
    )
    for line in sums:  # `sha256sum -c SHA256SUMS` format
        sha, name = line.split("  ")
        assert hashlib.sha256((built / name).read_bytes()).hexdigest() == sha
    assert {line.split("  ")[1] for line in sums} == {"omnitensor-agent.service", WHEEL}
    unit = Path(agent_dist.agent_dir() / "omnitensor-agent.service").read_bytes()
    assert (built / "omnitensor-agent.service").read_bytes() == unit


def test_the_wheel_is_the_agent_with_its_entry_point(built):
    with zipfile.ZipFile(built / WHEEL) as wheel:
        names = wheel.namelist()
        assert f'__version__ = "{VERSION}"' in wheel.read("omnitensor_agent/__init__.py").decode()
        entry_points = wheel.read(f"omnitensor_agent-{VERSION}.dist-info/entry_points.txt")
        metadata = wheel.read(f"omnitensor_agent-{VERSION}.dist-info/METADATA").decode()
    assert "omnitensor-agent = omnitensor_agent.cli:main" in entry_points.decode()
    assert "omnitensor_agent/proof/spec.py" in names
    assert not [n for n in names if "tests/" in n or n.endswith(".pyc")]
    assert "Requires-Dist: numpy" in metadata and "Requires-Dist: nvidia-ml-py" in metadata
    # Built from a copy: the checkout's agent/ gets no build/ folder.
    assert not (agent_dist.agent_dir() / "build").exists()


def test_an_unchanged_agent_is_not_rebuilt_and_a_rebuild_is_identical(built, tmp_path):
    before = (built / "SHA256SUMS").read_text()
    result, ran = agent_dist.build(built)
    assert (ran, result.wheel) == (False, WHEEL)

    # Another machine (or a forced rebuild) produces the very same bytes: web nodes that
    # build their own copy publish the same checksums.
    elsewhere = tmp_path / "elsewhere"
    (elsewhere).mkdir()
    (elsewhere / "omnitensor_agent-0.0.1-py3-none-any.whl").write_bytes(b"an older agent")
    result, ran = agent_dist.build(elsewhere, force=True)
    assert ran
    assert (elsewhere / "SHA256SUMS").read_text() == before
    assert not (elsewhere / "omnitensor_agent-0.0.1-py3-none-any.whl").exists()  # not listed


# --- before the build ----------------------------------------------------------------------


def test_everything_but_the_script_is_404_with_a_clear_message_before_the_build(not_built):
    client = Client()
    index = client.get("/agent/")
    assert index.status_code == 404
    assert index.json()["error"] == "agent_not_built"
    assert "manage.py build_agent" in index.json()["detail"]
    for path in ("/agent/SHA256SUMS", f"/agent/{WHEEL}", "/agent/omnitensor-agent.service"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "text/plain; charset=utf-8"
        assert b"python manage.py build_agent" in body(response)
    # The script is there, and says the same when it finds no SHA256SUMS (a 404 would reach
    # `curl -fsSL ... | sh` as an empty script that succeeds).
    assert client.get("/agent/install.sh").status_code == 200


def test_the_nodes_page_offers_the_one_line_install_only_once_the_agent_is_built(
    not_built, settings, built
):
    client = Client()
    assert sign_in(client, ALICE).status_code == 200
    html = client.post("/nodes/enrollment-code").content.decode()
    assert "install-command" not in html
    assert re.search(r"omnitensor-agent enroll --portal http://testserver --code \S+</pre>", html)
    assert "pip install ./agent" in html

    settings.AGENT_DIST_DIR = built
    html = client.post("/nodes/enrollment-code").content.decode()
    line = re.search(r'<pre class="command" id="install-command">([^<]*)</pre>', html)
    manual = re.search(r"omnitensor-agent enroll --portal (\S+) --code (\S+)</pre>", html)
    assert line and manual
    code = manual.group(2)
    assert line.group(1) == (
        f"curl -fsSL http://testserver/agent/install.sh | sh -s -- --code {code}"
    )
    assert 'data-copy="#install-command"' in html and 'data-copy="#enroll-command"' in html
    assert f'href="/agent/{WHEEL}"' in html  # the manual way stays, with the wheel
    assert hashlib.sha256((built / WHEEL).read_bytes()).hexdigest() in html
    # Shown once: the page itself names no code.
    assert code not in client.get("/nodes/").content.decode()


# --- the files -------------------------------------------------------------------------------


def test_the_index_names_version_file_and_checksum(served):
    response = Client().get("/agent/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    sha = hashlib.sha256((served / WHEEL).read_bytes()).hexdigest()
    assert response.json() == {
        "version": VERSION,
        "filename": WHEEL,
        "sha256": sha,
        "size": (served / WHEEL).stat().st_size,
        "url": f"http://testserver/agent/{WHEEL}",
        "sha256sums_url": "http://testserver/agent/SHA256SUMS",
        "install_url": "http://testserver/agent/install.sh",
        "unit_url": "http://testserver/agent/omnitensor-agent.service",
        "install_command": (
            "curl -fsSL http://testserver/agent/install.sh | sh -s -- --code ABCD-1234"
        ),
    }
    assert "no-cache" in response["Cache-Control"]


def test_the_wheel_is_served_whole_with_its_checksum_as_etag(served):
    client = Client()
    response = client.get(f"/agent/{WHEEL}")
    data = body(response)
    sha = hashlib.sha256(data).hexdigest()

    assert response.status_code == 200
    assert data == (served / WHEEL).read_bytes()
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Length"] == str(len(data))
    assert response["Content-Disposition"] == f'attachment; filename="{WHEEL}"'
    assert response["ETag"] == f'"{sha}"'
    assert "Last-Modified" in response
    assert set(response["Cache-Control"].replace(" ", "").split(",")) == {"public", "no-cache"}
    zipfile.ZipFile(io.BytesIO(data)).testzip()
    assert sha in (served / "SHA256SUMS").read_text()

    again = client.get(f"/agent/{WHEEL}", headers={"if-none-match": f'"{sha}"'})
    assert again.status_code == 304
    assert again["ETag"] == f'"{sha}"'
    head = client.head(f"/agent/{WHEEL}")
    assert head.status_code == 200 and head["Content-Length"] == str(len(data))
    assert client.post(f"/agent/{WHEEL}").status_code == 405


def test_sha256sums_and_the_unit_are_plain_text(served):
    client = Client()
    sums = client.get("/agent/SHA256SUMS")
    assert sums.status_code == 200
    assert sums["Content-Type"] == "text/plain; charset=utf-8"
    data = body(sums)
    assert data == (served / "SHA256SUMS").read_bytes()
    assert sums["Content-Length"] == str(len(data))
    assert "no-cache" in sums["Cache-Control"] and sums["ETag"]
    assert "Content-Disposition" not in sums or "attachment" not in sums["Content-Disposition"]

    unit = client.get("/agent/omnitensor-agent.service")
    assert unit.status_code == 200
    assert unit["Content-Type"] == "text/plain; charset=utf-8"
    assert body(unit) == (agent_dist.agent_dir() / "omnitensor-agent.service").read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/agent/omnitensor_agent-0.0.1-py3-none-any.whl",  # another version
        "/agent/.source-sha256",  # in the folder, not listed
        "/agent/planted.whl",  # in the folder, not listed
        "/agent/..%2f..%2fmanage.py",
        "/agent/%2e%2e/manage.py",
        "/agent/../manage.py",
        "/agent/..%5c..%5cmanage.py",
        "/agent/" + "%2e%2e%2f" * 8 + "etc%2fpasswd",
        f"/agent/{WHEEL}%00.txt",
        f"/agent/{WHEEL}/",
        f"/agent/./{WHEEL}",
    ],
)
def test_nothing_but_the_listed_files_is_served(served, path):
    (served / "planted.whl").write_bytes(b"not listed")
    try:
        response = Client().get(path)
    finally:
        (served / "planted.whl").unlink()
    assert response.status_code in (400, 404), path
    assert b"__version__" not in body(response) and b"planted" not in body(response)
    assert b"DJANGO_SETTINGS_MODULE" not in body(response) and b"root:" not in body(response)


def test_a_sha256sums_that_names_paths_lists_no_file(built, tmp_path, settings):
    """Even a tampered SHA256SUMS cannot make the portal serve a file outside its folder."""
    directory = tmp_path / "dist"
    shutil.copytree(built, directory)
    outside = "0" * 64 + "  ../outside.whl\n" + "1" * 64 + "  /etc/passwd\n"
    (directory / "SHA256SUMS").write_text((built / "SHA256SUMS").read_text() + outside)
    (tmp_path / "outside.whl").write_bytes(b"outside")
    settings.AGENT_DIST_DIR = directory

    assert set(agent_dist.published(directory).files) == {WHEEL, "omnitensor-agent.service"}
    for path in ("/agent/..%2foutside.whl", "/agent/outside.whl", "/agent/%2fetc%2fpasswd"):
        assert Client().get(path).status_code == 404, path


# --- the install script ----------------------------------------------------------------------


def test_the_script_carries_the_portal_url_it_was_fetched_from(not_built, settings):
    settings.ALLOWED_HOSTS = ["portal.example"]
    response = Client().get("/agent/install.sh", headers={"host": "portal.example"}, secure=True)
    script = body(response).decode()

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"  # readable in a browser
    assert response["Content-Length"] == str(len(script.encode()))
    assert "no-cache" in response["Cache-Control"] and response["ETag"]
    assert script.startswith("#!/bin/sh\n")
    assert "\nPORTAL_URL=https://portal.example\n" in script
    assert "__PORTAL_URL__" not in script
    assert script.rstrip().endswith('main "$@"')  # a download cut short runs nothing

    # Host headers the portal does not serve get no script.
    assert Client().get("/agent/install.sh", headers={"host": "evil.example"}).status_code == 400


def test_the_script_is_posix_sh_and_explains_itself(tmp_path):
    script = tmp_path / "install.sh"
    script.write_text(render_install_script("https://portal.example"))
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    if shutil.which("dash"):
        assert subprocess.run(["dash", "-n", str(script)], check=False).returncode == 0

    usage = subprocess.run(["sh", str(script), "--help"], capture_output=True, text=True)
    assert usage.returncode == 0
    assert "curl -fsSL https://portal.example/agent/install.sh | sh -s -- --code" in usage.stdout
    for option in ("--code", "--simulate", "--pipx", "--no-service"):
        assert option in usage.stdout

    wrong = subprocess.run(["sh", str(script), "--bogus"], capture_output=True, text=True)
    assert wrong.returncode == 1 and "unknown option: --bogus" in wrong.stderr
    bad = subprocess.run(
        ["sh", str(script), "--code", "x;y", "--simulate", "2"], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "is not an enrollment code" in bad.stderr


@pytest.mark.parametrize(
    "url", ["https://portal.example", "http://127.0.0.1:8000", "http://x'$(touch pwned)`id`\"y"]
)
def test_the_portal_url_is_one_shell_word_whatever_it_holds(url, tmp_path):
    line = next(
        line for line in render_install_script(url).splitlines() if line.startswith("PORTAL_URL=")
    )
    done = subprocess.run(
        ["sh", "-c", f'{line}\nprintf %s "$PORTAL_URL"'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == url
    assert not (tmp_path / "pwned").exists()
