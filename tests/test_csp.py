"""Every page sends a Content-Security-Policy that runs only the portal's own script files.

Text an agent chose could only run as script through an inline `<script>`, an `on…=` handler
or a `javascript:` URL; the policy allows none of them, so a template that ever forgot to
escape would still show text. Swagger UI's start-up script is the one inline script, allowed
by a nonce of its own response. tests/test_csp_browser.py checks the same pages in Chromium.
"""

import re
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from tests.support import siwe
from tests.support.markup_agent import reported_machine

pytestmark = pytest.mark.django_db


def policy_of(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response.request['PATH_INFO']}"
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


class Scripts(HTMLParser):
    """Every way a page could run script: <script> elements and on…= attributes."""

    def __init__(self, body: str):
        super().__init__()
        self.scripts: list[dict] = []
        self.inline_code: list[str] = []
        self.handlers: list[tuple[str, str]] = []
        self._in_script: dict | None = None
        self.feed(body)

    def handle_starttag(self, tag, attrs):
        attrs = {name: value or "" for name, value in attrs}
        self.handlers += [(tag, name) for name in attrs if name.startswith("on")]
        if tag == "script":
            self.scripts.append(attrs)
            self._in_script = attrs

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None and data.strip():
            self.inline_code.append(data)


def assert_strict(response) -> Scripts:
    """The policy allows script from this origin (and a nonce) only, and the page needs no
    more: no inline code without the nonce, no handler attribute, nothing from elsewhere."""
    assert response.status_code == 200
    policy = policy_of(response)
    script_src = policy["script-src"]
    assert "'self'" in script_src
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:"} & set(
        script_src
    )
    assert all(s == "'self'" or s.startswith("'nonce-") for s in script_src), script_src
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    nonces = {s[len("'nonce-") : -1] for s in script_src if s.startswith("'nonce-")}

    page = Scripts(response.content.decode())
    assert page.handlers == []
    for script in page.scripts:
        if "src" in script:
            # This origin's files (static ones, the admin's translations), never a CDN.
            assert re.match(r"/[^/]", script["src"]), script
        elif script.get("type") != "application/json":
            assert script.get("nonce") in nonces, script
    return page


@pytest.fixture
def signed_in(alice):
    return siwe.signed_in(alice)


@pytest.mark.parametrize("path", ["/", "/signin/", "/estimate/"])
def test_public_pages_run_only_the_portals_script_files(client, path):
    page = assert_strict(client.get(path))
    assert all("src" in s or s.get("type") == "application/json" for s in page.scripts)


def test_the_contributors_pages_run_only_the_portals_script_files(alice, signed_in):
    machine = reported_machine(alice)
    paths = [
        "/dashboard/",
        "/nodes/",
        f"/gpus/{machine.uuids[0]}/",
        "/rewards/",
        "/claims/",
        "/wallets/",
    ]
    for path in paths:
        page = assert_strict(signed_in.get(path))
        # Figures travel as JSON data, never as code.
        inline = [s for s in page.scripts if "src" not in s]
        assert all(s.get("type") == "application/json" for s in inline), (path, inline)


def test_the_page_that_shows_a_new_enrollment_code_runs_no_inline_script(signed_in):
    response = signed_in.post(reverse("enroll-code"))

    page = assert_strict(response)
    assert all("src" in s or s.get("type") == "application/json" for s in page.scripts)


def test_the_admin_runs_under_the_same_policy(alice, staff):
    reported_machine(alice)
    for name in ("index", "contributors_node_changelist", "contributors_gpu_changelist"):
        assert_strict(staff.get(reverse(f"admin:{name}")))


def test_swagger_ui_starts_by_its_responses_nonce_alone(client):
    first, second = client.get("/api/docs/"), client.get("/api/docs/")

    page = assert_strict(first)
    (inline,) = [s for s in page.scripts if "src" not in s]
    assert inline["nonce"]
    assert any("SwaggerUIBundle(" in code for code in page.inline_code)
    # A fresh nonce per response: one read off a page is no key to another.
    assert inline["nonce"] != Scripts(second.content.decode()).scripts[-1]["nonce"]
    assert re.search(r"'nonce-[A-Za-z0-9+/=]+'", first.headers["Content-Security-Policy"])


def test_pages_without_inline_script_carry_no_nonce(client):
    policy = policy_of(client.get("/estimate/"))
    assert policy["script-src"] == ["'self'"]
