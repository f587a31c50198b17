"""The one-line install, end to end: the command the machines page shows, run by `sh` in a fresh
home directory against a live portal, installs the agent the portal built into a virtualenv of
its own, enrolls two simulated GPUs, and the installed agent's reports make them live. Running
it again upgrades in place; a wheel that does not match SHA256SUMS is refused."""

import os
import re
import shutil
import signal
import subprocess
import sys
from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client

from contributors.models import GPU, Node, Sample, TelemetryBatch
from contributors.signin import contributor_for_sign_in
from contributors.telemetry import store as ingest
from portal import agent_dist
from tests.support.processes import wait_for
from tests.support.siwe import ALICE

pytestmark = [
    pytest.mark.processes,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_catalog"),
]

# pip's own configuration of the user running the tests (local mirrors, indexes), which a
# fresh home directory would otherwise lose; /etc/pip.conf and PIP_* variables carry over.
USER_PIP_CONFIGS = (".config/pip/pip.conf", ".pip/pip.conf")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("agent-dist")
    call_command("build_agent", output=directory, stdout=StringIO())
    return directory


@pytest.fixture
def home(tmp_path) -> Path:
    """A fresh home directory, with the test user's pip configuration only."""
    home = tmp_path / "home"
    home.mkdir()
    for relative in USER_PIP_CONFIGS:
        if (Path.home() / relative).is_file():
            (home / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path.home() / relative, home / relative)
    return home


def shell_env(home: Path) -> dict:
    """The environment of a login on the GPU machine: this one's, less the test run's
    virtualenv and any XDG folders, with HOME in the fresh folder."""
    venv_bin = str(Path(sys.executable).parent)
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "DJANGO_SETTINGS_MODULE"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("XDG_")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["HOME"] = str(home)
    return env


def one_line(live_server) -> str:
    """The command the machines page shows after "Add a machine", as a contributor sees it on
    this portal, and the code in it."""
    client = Client()
    client.force_login(contributor_for_sign_in(ALICE.address))
    host = urlsplit(live_server.url).netloc
    html = client.post("/nodes/enrollment-code", headers={"host": host}).content.decode()
    line = re.search(r'<pre class="command" id="install-command">([^<]*)</pre>', html)
    assert line, html
    return line.group(1)


def run_line(line: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    extra = " --simulate 2 --no-service"
    if os.geteuid() == 0:
        extra += " --user"  # as root the script installs into /opt and /etc: not in a test
    if not shutil.which("curl"):
        # The line's curl, by Python's urllib (the script itself falls back to wget or urllib).
        fetch = (
            "python3 -c 'import sys, urllib.request as u; "
            "sys.stdout.buffer.write(u.urlopen(sys.argv[1]).read())'"
        )
        line = line.replace("curl -fsSL", fetch, 1)
    return subprocess.run(
        ["sh", "-c", line + extra],
        env=shell_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_one_line_installs_enrolls_and_the_agent_reports(live_server, built, settings, home):
    settings.AGENT_DIST_DIR = built
    settings.AGENT_SAMPLE_INTERVAL_S = 1
    settings.AGENT_REPORT_INTERVAL_S = 1
    line = one_line(live_server)
    assert line.startswith(f"curl -fsSL {live_server.url}/agent/install.sh | sh -s -- --code ")

    done = run_line(line, home)

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    venv = home / ".local/share/omnitensor-agent/venv"
    agent = venv / "bin/omnitensor-agent"
    wheel = agent_dist.published(built).wheel
    assert f"{wheel}: sha256 {agent_dist.published(built).sha256} verified" in output
    assert "Enrolled node" in output and "2 GPU(s)" in output
    assert f"{agent} run" in output  # --no-service: how to start it
    config = home / ".config/omnitensor-agent/config.json"
    assert config.stat().st_mode & 0o777 == 0o600
    node = Node.objects.get()
    assert node.gpus.count() == 2
    assert not (home / ".config/systemd").exists()
    version = subprocess.run([agent, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"omnitensor-agent {agent_dist.agent_version()}"

    # The installed agent (the new virtualenv's, not this test run's) reports; this process
    # ingests what it posts, as workers would.
    log = home / "agent.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [agent, "run"], env=shell_env(home), cwd=home, stdout=out, stderr=subprocess.STDOUT
        )
    try:

        def both_gpus_reported():
            pending = TelemetryBatch.objects.filter(status="pending")
            for pk in pending.values_list("pk", flat=True):
                ingest.ingest(pk)
            return GPU.objects.filter(node=node, last_sample_at__isnull=False).count() == 2

        wait_for(both_gpus_reported, timeout=60, message=f"no reports: {log.read_text()}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    node.refresh_from_db()
    assert node.last_seen_at is not None
    assert Sample.objects.filter(gpu__node=node).exists()
    assert process.returncode == 0, log.read_text()

    # Again, with no code: the agent is upgraded in place and the enrollment kept.
    again = run_line(re.sub(r" --code \S+", "", line), home)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "keeping its enrollment" in again.stdout
    assert Node.objects.count() == 1
    assert agent.exists()


def test_a_wheel_that_does_not_match_sha256sums_is_refused(
    live_server, built, settings, home, tmp_path
):
    tampered = tmp_path / "tampered"
    shutil.copytree(built, tampered)
    wheel = agent_dist.published(built).wheel
    with (tampered / wheel).open("ab") as fh:
        fh.write(b"\0")
    settings.AGENT_DIST_DIR = tampered
    line = one_line(live_server)

    done = run_line(line, home, timeout=120)

    assert done.returncode == 1, done.stdout + done.stderr
    assert f"checksum mismatch for {wheel}" in done.stderr
    assert "Nothing was installed" in done.stderr
    assert not (home / ".local/share/omnitensor-agent").exists()
    assert not Node.objects.exists()


def test_the_script_says_so_when_the_portal_has_not_built_the_agent(
    live_server, built, settings, home, tmp_path
):
    settings.AGENT_DIST_DIR = built
    line = one_line(live_server)
    settings.AGENT_DIST_DIR = tmp_path / "not-built"

    done = run_line(line, home, timeout=120)

    assert done.returncode == 1
    assert "python manage.py build_agent" in done.stderr
    assert not (home / ".local/share/omnitensor-agent").exists()
