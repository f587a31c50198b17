"""/leaderboard/ and GET /api/v1/leaderboard through HTTP: ranks that match a reference computed
here over random ledgers, deterministic ties, privacy (a contributor who left the board appears
nowhere, not even as a gap), display names cleaned and escaped, bad parameters refused, and
answers that cost no query whatever the ledger's size."""

import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contributors.models import GPU, Contributor, GpuHour, Node
from contributors.signin import contributor_for_sign_in
from portal.demo import (
    DEMO_CONTRIBUTORS,
    DEMO_DISPLAY_NAMES,
    demo_account,
    demo_profiles,
    demo_public_figures,
)
from rewards.ledger import add_to_earning_days
from rewards.models import EarningDay, Epoch, HeldOut, RewardEntry
from rewards.public import leaderboard, store
from tests.support.agent_api import nvml_uuid
from tests.support.public import (
    BOARDS,
    PERIODS,
    board,
    contributor,
    run_beat_task,
    short,
    wallet_of,
)
from tests.support.rewards import H100, Rig, attest, epoch_start, gpu, ingest_all, samples, settle
from tests.support.siwe import signed_in

pytestmark = pytest.mark.django_db

OMNIT = 10**18
HOUR = timedelta(hours=1)
# Markup and a plotly.js template, in a name the leaderboard shows.
MARKUP = "<img src=x onerror=alert(1)>"


# --- a ledger written directly, as settlement would have --------------------------------------


@dataclass
class Member:
    person: Contributor
    gpus: list[GPU]  # physical GPUs; `mig` is an instance of the first
    mig: GPU


def member(label: str, person: Contributor | None = None) -> Member:
    person = person or contributor(label)
    node = Node(owner=person, name=f"{label}-rig")
    node.set_new_token()
    node.save()
    gpus = [
        GPU.objects.create(node=node, uuid=nvml_uuid(f"lb-{label}-{i}"), name=H100["name"],
                           memory_total_mib=H100["memory_total_mib"])
        for i in range(2)
    ]  # fmt: skip
    mig = GPU.objects.create(
        node=node, uuid=nvml_uuid(f"lb-{label}-mig", "MIG"), name=H100["name"],
        memory_total_mib=20000, mig_parent=gpus[0],
    )  # fmt: skip
    return Member(person, gpus, mig)


def forget_ledger() -> None:
    EarningDay.objects.all().delete()
    RewardEntry.objects.all().delete()
    HeldOut.objects.all().delete()
    Epoch.objects.all().delete()
    GpuHour.objects.all().delete()


def hour0(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def write_epoch(start: datetime, paid: list[tuple[GPU, str, int]]) -> None:
    """A settled epoch that paid `paid` (gpu, kind, wei), with its day totals, as settlement
    writes them."""
    epoch = Epoch.objects.create(
        start=start, end=start + HOUR, status=Epoch.Status.SETTLED, grace_s=900, max_gap_s=30,
        compute_pool_wei=1000 * OMNIT, idle_pool_wei=250 * OMNIT, settled_at=start + 2 * HOUR,
    )  # fmt: skip
    entries = RewardEntry.objects.bulk_create(
        RewardEntry(epoch=epoch, gpu=g, contributor_id=g.node.owner_id, kind=kind, units="1",
                    amount_wei=amount, inputs={})
        for g, kind, amount in paid
    )  # fmt: skip
    add_to_earning_days(start, entries)


def reference(members, entries, hours, now) -> dict:
    """What every board must be, computed from the generated ledger alone: period → board →
    [(rank, name, named, total, compute, idle, online_s)]."""
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    since = {"24h": now - timedelta(hours=24), "7d": today - timedelta(days=6),
             "30d": today - timedelta(days=29)}  # fmt: skip
    owner = {g.pk: m for m in members for g in [*m.gpus, m.mig]}
    boards = {}
    for period in PERIODS:
        earned = {m.person.pk: [0, 0] for m in members}
        for start, gpu_row, kind, amount in entries:
            if start >= since[period]:
                earned[owner[gpu_row.pk].person.pk][kind == "idle"] += amount
        online = {m.person.pk: 0 for m in members}
        for start, gpu_row, seconds in hours:
            if start >= since[period] and gpu_row.mig_parent_id is None:
                online[owner[gpu_row.pk].person.pk] += seconds
        values = {
            "total": {pk: c + i for pk, (c, i) in earned.items()},
            "compute": {pk: c for pk, (c, _) in earned.items()},
            "idle": {pk: i for pk, (_, i) in earned.items()},
            "uptime": online,
        }
        listed = {m.person.pk: m for m in members if m.person.leaderboard != "hidden"}
        boards[period] = {}
        for name in BOARDS:
            order = sorted(
                (pk for pk, value in values[name].items() if value > 0 and pk in listed),
                key=lambda pk, v=values[name]: (-v[pk], pk),
            )[: leaderboard.BOARD_SIZE]
            rows = []
            for rank, pk in enumerate(order, start=1):
                person = listed[pk].person
                named = person.leaderboard == "name" and bool(person.display_name)
                label = person.display_name if named else short(person.wallets.get().address)
                compute, idle = earned[pk]
                rows.append((rank, label, named, compute + idle, compute, idle, online[pk]))
            boards[period][name] = rows
    return boards


def served(period: str, by: str) -> list[tuple]:
    return [
        (r["rank"], r["name"], r["named"], int(r["total_wei"]), int(r["compute_wei"]),
         int(r["idle_wei"]), r["online_s"])
        for r in board(period, by)["rows"]
    ]  # fmt: skip


AMOUNTS = st.one_of(st.sampled_from([0, 1, OMNIT, 3 * OMNIT]), st.integers(0, 2**80))
# Hours ago: often within a day or two (the 24 h board and the day edges), else within 40 days.
RECENT = st.one_of(st.integers(1, 48), st.integers(1, 40 * 24))
SECONDS = st.one_of(st.sampled_from([0, 1800, 3600]), st.integers(0, 3600))


@st.composite
def ledgers(draw, people: int):
    gpu_slots = 3 * people  # two physical GPUs and one MIG instance each
    entries = draw(
        st.lists(
            st.tuples(RECENT, st.integers(0, gpu_slots - 1), st.sampled_from(["compute", "idle"]),
                      AMOUNTS),
            min_size=1, max_size=30, unique_by=lambda e: e[:3],
        )
    )  # fmt: skip
    hours = draw(
        st.lists(
            st.tuples(RECENT.map(lambda h: h - 1), st.integers(0, gpu_slots - 1), SECONDS),
            min_size=1, max_size=30, unique_by=lambda h: h[:2],
        )
    )  # fmt: skip
    choices = draw(st.lists(st.sampled_from(["wallet", "wallet", "name", "hidden"]),
                            min_size=people, max_size=people))  # fmt: skip
    named = draw(st.lists(st.booleans(), min_size=people, max_size=people))
    return entries, hours, choices, named


PEOPLE = 5


def test_ranks_match_a_reference_over_random_ledgers(monkeypatch):
    monkeypatch.setattr(leaderboard, "BOARD_SIZE", 3)  # so that boards are cut, too
    members = [member(f"p{i}") for i in range(PEOPLE)]
    slots = [g for m in members for g in [*m.gpus, m.mig]]
    now = timezone.now().replace(minute=30, second=0, microsecond=0)

    @settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
    @given(ledgers(PEOPLE))
    def check(ledger):
        entries, hours, choices, named = ledger
        forget_ledger()
        cache.clear()  # days summed once are kept: a rewritten past must be summed again
        for index, m in enumerate(members):
            Contributor.objects.filter(pk=m.person.pk).update(
                leaderboard=choices[index],
                display_name=f"{MARKUP} p{index}" if named[index] else "",
            )
            m.person.refresh_from_db()
        made = [(hour0(now) - h * HOUR, slots[s], kind, amount) for h, s, kind, amount in entries]
        by_epoch: dict = {}
        for start, gpu_row, kind, amount in made:
            by_epoch.setdefault(start, []).append((gpu_row, kind, amount))
        for start, paid in by_epoch.items():
            write_epoch(start, paid)
        rolled = [(hour0(now) - h * HOUR, slots[s], seconds) for h, s, seconds in hours]
        GpuHour.objects.bulk_create(
            GpuHour(gpu=g, start=start, samples=1, online_s=seconds) for start, g, seconds in rolled
        )

        store.compute_all(now)

        expected = reference(members, made, rolled, now)
        for period in PERIODS:
            for by in BOARDS:
                assert served(period, by) == expected[period][by], (period, by)

    check()


def test_ties_are_ranked_by_contributor_id_the_same_every_time():
    members = [member(label) for label in ("t1", "t2", "t3")]
    start = hour0(timezone.now()) - 2 * HOUR
    # The same total for all three, made of different parts; the newest account earns first.
    write_epoch(start, [(members[2].gpus[0], "compute", 5 * OMNIT),
                        (members[1].gpus[0], "compute", 2 * OMNIT),
                        (members[1].gpus[1], "idle", 3 * OMNIT),
                        (members[0].gpus[0], "idle", 5 * OMNIT)])  # fmt: skip
    ids = sorted(m.person.pk for m in members)
    wallet = {m.person.pk: short(m.person.wallets.get().address) for m in members}

    for _ in range(2):
        run_beat_task()
        rows = board("24h", "total")["rows"]
        assert [r["name"] for r in rows] == [wallet[pk] for pk in ids]
        assert [r["rank"] for r in rows] == [1, 2, 3]
    page = Client().get("/leaderboard/").content.decode()
    assert [page.index(wallet[pk]) for pk in ids] == sorted(page.index(wallet[pk]) for pk in ids)
    assert "account opened first ahead" in page


# --- from what settlement paid and the rollups counted ----------------------------------------


@pytest.mark.usefixtures("seeded_catalog")
def test_the_boards_are_what_settlement_paid_and_the_telemetry_covered(alice, bob):
    a, b = nvml_uuid("lb-a"), nvml_uuid("lb-b")
    alice_rig, bob_rig = Rig(alice, [gpu(a, H100)]), Rig(bob, [gpu(b, H100)])
    start = epoch_start(3)
    attest("lb-job", a, start, start + HOUR)
    alice_rig.report(
        samples(a, start, seconds=range(0, 3600, 30), util=60, used=8000, job="lb-job")
    )
    bob_rig.report(samples(b, start, seconds=range(0, 1800, 30), used=1024))  # half the hour
    ingest_all()
    settle(start)
    profile = {"display_name": "Bob's rigs", "leaderboard": "name"}
    assert signed_in(bob).post("/wallets/profile", profile).status_code == 302

    run_beat_task()

    def paid(person) -> tuple[int, int]:
        rows = RewardEntry.objects.filter(contributor=person)
        return tuple(
            sum(e.amount_wei for e in rows if e.kind == kind) for kind in ("compute", "idle")
        )

    total = board("24h", "total")["rows"]
    assert [(r["name"], r["named"]) for r in total] == [
        (short(alice.wallets.get().address), False),
        ("Bob's rigs", True),
    ]
    for row, person in zip(total, (alice, bob), strict=True):
        compute, idle = paid(person)
        assert (int(row["compute_wei"]), int(row["idle_wei"])) == (compute, idle)
        assert int(row["total_wei"]) == compute + idle
    # All of the compute pool went to alice's attested job; bob shared only the idle pool.
    assert int(total[0]["compute_wei"]) == 1000 * OMNIT
    assert [r["name"] for r in board("24h", "compute")["rows"]] == [total[0]["name"]]
    # Uptime: each sample covers 30 s, so a full hour and half of one.
    uptime = board("24h", "uptime")["rows"]
    assert [(r["name"], r["online_s"]) for r in uptime] == [
        (total[0]["name"], 3600),
        ("Bob's rigs", 1800),
    ]
    assert board("7d", "total")["rows"] == board("30d", "total")["rows"]


def test_uptime_of_days_that_can_no_longer_change_is_summed_once(settings):
    (m,) = [member("steady")]
    now = timezone.now()
    old = hour0(now) - 10 * 24 * HOUR  # a final day: no sample of it can arrive any more
    GpuHour.objects.create(gpu=m.gpus[0], start=old, online_s=3600)
    GpuHour.objects.create(gpu=m.gpus[1], start=hour0(now) - HOUR, online_s=1800)
    with CaptureQueriesContext(connection) as first:
        run_beat_task()
    with CaptureQueriesContext(connection) as again:
        run_beat_task()

    assert len(again) == len(first) - 1  # the final days came from the cache
    assert board("30d", "uptime")["rows"][0]["online_s"] == 5400
    assert board("7d", "uptime")["rows"][0]["online_s"] == 1800
    assert board("24h", "uptime")["rows"][0]["online_s"] == 1800
    # Recent hours still move (a late sample, a spool replayed after an outage).
    GpuHour.objects.filter(gpu=m.gpus[1]).update(online_s=3600)
    run_beat_task()
    assert board("30d", "uptime")["rows"][0]["online_s"] == 7200


# --- privacy ----------------------------------------------------------------------------------


def every_board() -> list[dict]:
    return [board(period, by) for period in PERIODS for by in BOARDS]


def every_page() -> str:
    return "".join(
        Client().get("/leaderboard/", {"period": p, "by": b}).content.decode()
        for p in PERIODS
        for b in BOARDS
    )


def test_a_contributor_who_left_the_board_appears_nowhere(django_capture_on_commit_callbacks):
    members = [member(label) for label in ("first", "second", "third")]
    start = hour0(timezone.now()) - 2 * HOUR
    write_epoch(start, [(m.gpus[0], "compute", (3 - i) * OMNIT) for i, m in enumerate(members)])
    GpuHour.objects.bulk_create(
        GpuHour(gpu=m.gpus[0], start=start, samples=1, online_s=3000 - i)
        for i, m in enumerate(members)
    )  # fmt: skip
    leaving = members[0].person
    signed_in(leaving).post(
        "/wallets/profile", {"display_name": "Top Earner", "leaderboard": "name"}
    )
    run_beat_task()
    assert board()["rows"][0]["name"] == "Top Earner"

    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in(leaving).post(
            "/wallets/profile", {"display_name": "Top Earner", "leaderboard": "hidden"}
        )
    assert response.status_code == 302

    # At once, before beat runs again: no row, no gap, not in the stored boards either.
    traces = (short(wallet_of("first").address), "Top Earner")

    def nowhere() -> None:
        for served_board in every_board():
            assert [r["rank"] for r in served_board["rows"]] == list(
                range(1, len(served_board["rows"]) + 1)
            )
            assert all(r["name"] not in traces for r in served_board["rows"])
        assert len(board()["rows"]) == 2
        page = every_page()
        assert not any(trace in page for trace in traces)
        stored = cache.get(store.LEADERBOARD_KEY)
        assert leaving.pk not in {
            row["cid"]
            for period in stored["periods"].values()
            for rows in period["boards"].values()
            for row in rows
        }

    nowhere()
    run_beat_task()
    nowhere()
    assert board()["rows"][0]["name"] == short(wallet_of("second").address)

    # Back on the board by wallet once they ask for it.
    with django_capture_on_commit_callbacks(execute=True):
        signed_in(leaving).post("/wallets/profile", {"display_name": "", "leaderboard": "wallet"})
    run_beat_task()
    assert board()["rows"][0]["name"] == short(wallet_of("first").address)


def test_stored_boards_name_people_as_they_chose_when_they_change_it_meanwhile(
    django_capture_on_commit_callbacks,
):
    (m,) = [member("renamed")]
    write_epoch(hour0(timezone.now()) - 2 * HOUR, [(m.gpus[0], "idle", OMNIT)])
    run_beat_task()

    with django_capture_on_commit_callbacks(execute=True):
        signed_in(m.person).post(
            "/wallets/profile", {"display_name": "New Name", "leaderboard": "name"}
        )

    assert [(r["rank"], r["name"], r["named"]) for r in board()["rows"]] == [(1, "New Name", True)]


# --- display names ------------------------------------------------------------------------------


def test_html_in_a_display_name_is_shown_as_text_everywhere():
    (m,) = [member("markup")]
    write_epoch(hour0(timezone.now()) - 2 * HOUR,
                [(m.gpus[0], "compute", OMNIT), (m.gpus[1], "idle", OMNIT)])  # fmt: skip
    GpuHour.objects.create(gpu=m.gpus[0], start=hour0(timezone.now()) - HOUR, online_s=600)
    name = "<img src=x onerror=1>&amp;%{x}"  # markup, an entity, a plotly.js template
    owner = signed_in(m.person)
    response = owner.post("/wallets/profile", {"display_name": name, "leaderboard": "name"})
    assert response.status_code == 302
    run_beat_task()

    assert board()["rows"][0]["name"] == name  # JSON carries the text as it is
    as_html = "&lt;img src=x onerror=1&gt;&amp;amp;%{x}"
    for by in BOARDS:
        html = Client().get("/leaderboard/", {"by": by}).content.decode()
        assert "<img src=x" not in html
        assert as_html in html
        figure = json.loads(
            re.search(r'id="leaderboard-figure">(.*?)</script>', html, re.S).group(1)
        )
        # plotly.js reads markup and entities in labels: the label says them as text.
        assert figure["data"][0]["y"] == ["1. &lt;img src=x onerror=1&gt;&amp;amp;&#37;{x}"]
    assert f'value="{as_html}"' in owner.get("/wallets/").content.decode()


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("  Carol \t\n Lab  ", "Carol Lab"),
        ("Ca\u202erol\u200b\u0007 Lab", "Carol Lab"),  # bidi override, zero width, bell
        ("\uff23\uff41\uff52\uff4f\uff4c", "Carol"),  # full-width letters, folded by NFKC
        ("x" * 32, "x" * 32),
    ],
)
def test_display_names_are_cleaned_before_they_are_stored(typed, stored):
    person = contributor("cleaned")
    response = signed_in(person).post(
        "/wallets/profile", {"display_name": typed, "leaderboard": "name"}
    )

    assert response.status_code == 302
    person.refresh_from_db()
    assert (person.display_name, person.leaderboard) == (stored, "name")


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"display_name": "x" * 33, "leaderboard": "name"}, "at most 32 characters"),
        ({"display_name": "0xC0ffee", "leaderboard": "name"}, "may not look like a wallet"),
        ({"display_name": "", "leaderboard": "name"}, "Choose a display name"),
        ({"display_name": "\u200b\u202e", "leaderboard": "name"}, "Choose a display name"),
        ({"display_name": "TAKEN", "leaderboard": "wallet"}, "Another contributor has this"),
        ({"display_name": "ok", "leaderboard": "everyone"}, "Select a valid choice"),
        ({"display_name": "nul\x00", "leaderboard": "name"}, "Null characters are not allowed"),
    ],
)
def test_display_names_that_cannot_be_shown_are_refused(form, error):
    Contributor.objects.filter(pk=contributor("holder").pk).update(display_name="Taken")
    person = contributor("refused")
    response = signed_in(person).post("/wallets/profile", form)

    assert response.status_code == 400
    assert error in response.content.decode()
    person.refresh_from_db()
    assert (person.display_name, person.leaderboard) == ("", "wallet")


# --- parameters and queries -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"period": "1y"}, ["period"]),
        ({"by": "wei"}, ["by"]),
        ({"period": "", "by": "total"}, ["period"]),
        ({"period": "24H", "by": "Total"}, ["period", "by"]),
    ],
)
def test_bad_parameters_are_refused_with_400(params, fields):
    response = Client().get("/api/v1/leaderboard", params)

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_failed"
    assert [e["field"] for e in body["errors"]] == fields
    assert all(f"{field} must be one of" in body["detail"] for field in fields)
    page = Client().get("/leaderboard/", params)
    assert page.status_code == 400
    assert 'id="bad-request"' in page.content.decode()


def test_every_board_costs_no_query_for_a_small_or_a_larger_ledger():
    urls = [f"/api/v1/leaderboard?period={p}&by={b}" for p in PERIODS for b in BOARDS] + [
        f"/leaderboard/?period={p}&by={b}" for p in PERIODS for b in BOARDS
    ]

    def counts() -> dict:
        out = {}
        for url in urls:
            with CaptureQueriesContext(connection) as queries:
                assert Client().get(url).status_code == 200
            out[url] = len(queries)
        return out

    members = [member(f"q{i}") for i in range(3)]
    now = timezone.now()
    write_epoch(hour0(now) - 2 * HOUR, [(members[0].gpus[0], "idle", OMNIT)])
    with CaptureQueriesContext(connection) as computing:
        run_beat_task()
    small = counts()

    members += [member(f"q{i}") for i in range(3, 30)]
    for h in range(3, 24 * 20, 7):
        write_epoch(hour0(now) - h * HOUR, [(m.gpus[h % 2], "compute", h * OMNIT) for m in members])
    GpuHour.objects.bulk_create(
        GpuHour(gpu=m.gpus[0], start=hour0(now) - h * HOUR, online_s=h)
        for m in members
        for h in range(1, 24 * 30)
    )  # fmt: skip
    cache.clear()  # from nothing, as the first run was (final days are then kept)
    with CaptureQueriesContext(connection) as computing_more:
        run_beat_task()
    big = counts()

    assert big == small == dict.fromkeys(urls, 0)
    assert len(computing_more) == len(computing)
    assert len(board("30d", "compute")["rows"]) == 30


# --- the demo -----------------------------------------------------------------------------------


def test_the_demo_lists_carol_by_her_name_and_bob_nowhere():
    people = {
        name: contributor_for_sign_in(demo_account(name).address) for name in DEMO_CONTRIBUTORS
    }
    members = {name: member(f"demo-{name}", person) for name, person in people.items()}
    write_epoch(hour0(timezone.now()) - 2 * HOUR,
                [(m.gpus[0], "compute", OMNIT) for m in members.values()])  # fmt: skip
    stop = threading.Event()
    stop.set()  # the second computation, once the agents report, is not waited for here

    demo_profiles()
    demo_public_figures(stop)  # what the fleet's start does right after the history

    # Ties by id: alice signed in first; bob, who chose not to be listed, leaves no gap.
    rows = [(row["rank"], row["name"]) for row in board()["rows"]]
    assert rows == [(1, short(demo_account("alice").address)), (2, DEMO_DISPLAY_NAMES["carol"])]
    page = Client().get("/leaderboard/").content.decode()
    assert "Carol&#x27;s GPU Lab" in page
    assert short(demo_account("bob").address) not in page


def test_an_admin_who_takes_someone_off_the_board_takes_them_off_at_once(
    staff, django_capture_on_commit_callbacks
):
    """An admin clears a display name and unlists its contributor in the admin: the stored
    boards drop them at once, before beat runs again."""
    (m,) = [member("unlisted-by-admin")]
    write_epoch(hour0(timezone.now()) - 2 * HOUR, [(m.gpus[0], "idle", OMNIT)])
    signed_in(m.person).post("/wallets/profile", {"display_name": "Spammy", "leaderboard": "name"})
    run_beat_task()
    assert [r["name"] for r in board()["rows"]] == ["Spammy"]

    url = f"/admin/contributors/contributor/{m.person.pk}/change/"
    person = Contributor.objects.get(pk=m.person.pk)
    form = {
        "username": person.username,
        "date_joined_0": person.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": person.date_joined.strftime("%H:%M:%S"),
        "is_active": "on",
        "display_name": "",
        "leaderboard": "hidden",
        "wallets-TOTAL_FORMS": "0",
        "wallets-INITIAL_FORMS": "0",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    person.refresh_from_db()
    assert (person.display_name, person.leaderboard) == ("", "hidden")

    assert board()["rows"] == []
    assert "Spammy" not in json.dumps(cache.get(store.LEADERBOARD_KEY))
