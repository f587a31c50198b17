"""Alert evaluation end to end: agents report through the real agent API, a worker ingests,
`evaluate.run(now)` raises events and fans them out, and each delivery is sent to a locmem
mailbox with `delivery.deliver` (queued tasks go to a queue nobody reads).

The tests move a clock of their own instead of sleeping. The portal stamps a batch with the
real time it arrived; `Rig.report(at)` moves that stamp onto the test's clock before the batch
is ingested, so the machine and its GPUs were last seen at `at` exactly. The clock starts a few
hours back (on an epoch boundary) and never passes the real one, so every sample the agents send
is inside the window the API accepts.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contributors.alerts import delivery, evaluate
from contributors.models import (
    DEFAULT_EVENTS,
    AlertChannel,
    AlertDelivery,
    AlertEvent,
    AlertPreferences,
    Challenge,
    Contributor,
    EventKind,
    TelemetryBatch,
)
from contributors.tasks import check_challenge
from contributors.telemetry import store as ingest
from rewards.models import HeldOut
from tests.support import rewards as support
from tests.support.agent_api import Agent, batch, enroll, h100, sample
from tests.support.claims import CONFIRMATIONS, credit, post_claim, start_evm
from tests.support.prover import COMMIT, REVEAL, honest, reveal_rows
from tests.support.siwe import signed_in

pytestmark = pytest.mark.django_db

MINUTE = timedelta(minutes=1)


@pytest.fixture(autouse=True)
def _mailbox(settings, parking_queue):
    """Emails land in django.core.mail.outbox; delivery tasks are parked, never run."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.ALERT_FLAP_LIMIT = 3
    settings.ALERT_FLAP_WINDOW_S = 6 * 3600
    settings.ALERT_EPOCH_WARNING_S = 15 * 60
    settings.ALERT_REPEAT_S = 24 * 3600
    settings.ALERT_DIGEST_HOUR = 8
    mail.outbox = []


def start_of_clock(hours_back: int = 3) -> datetime:
    """An epoch boundary (1 h epochs) a few hours ago: where a test's clock starts."""
    return timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_back)


class Rig:
    """A machine enrolled for `owner` through the agent API, with H100s named by `labels`."""

    def __init__(self, owner, labels: list[str], hostname: str):
        self.name = hostname
        self.uuids = [h100(label)["uuid"] for label in labels]
        self.agent = Agent(enroll(owner, [h100(label) for label in labels], hostname=hostname))

    def report(self, at: datetime, uuids: list[str] | None = None, **fields) -> None:
        """The agent posts one sample per GPU (all, or `uuids`) taken 5 s before `at`; the
        portal received it at `at` and a worker ingests it."""
        body = batch([sample(u, at - timedelta(seconds=5), **fields) for u in uuids or self.uuids])
        response = self.agent.send(body)
        assert response.status_code == 202, response.content
        assert response.json()["accepted"] == len(body["samples"]), response.content
        row = self.agent.batch_row(body["batch_id"])
        TelemetryBatch.objects.filter(pk=row.pk).update(received_at=at)
        assert ingest.ingest(row.pk) == len(body["samples"])

    def report_only(self, uuids: list[str]):
        """`report`, for these GPUs only."""
        return lambda at, **fields: self.report(at, uuids=uuids, **fields)


def email_channel(owner, address: str, events=None) -> AlertChannel:
    return AlertChannel.objects.create(
        contributor=owner,
        kind=AlertChannel.Kind.EMAIL,
        target=address,
        verified_at=timezone.now(),
        events=list(DEFAULT_EVENTS if events is None else events),
    )


def run(at: datetime) -> dict:
    """One evaluation at `at`, then every delivery it made due is sent (as a worker would)."""
    counts = evaluate.run(at)
    due = AlertDelivery.objects.filter(status=AlertDelivery.Status.PENDING, next_attempt_at__lte=at)
    for pk in due.values_list("pk", flat=True):
        assert delivery.deliver(pk, at) == AlertDelivery.Status.SENT
    return counts


def events(owner=None, kind: str | None = None) -> list[AlertEvent]:
    rows = AlertEvent.objects.order_by("created_at", "pk")
    if owner is not None:
        rows = rows.filter(contributor=owner)
    if kind is not None:
        rows = rows.filter(kind=kind)
    return list(rows)


def emails(to: str, containing: str = "") -> list:
    return [m for m in mail.outbox if m.to == [to] and containing in m.subject]


# --- 1. a machine stops reporting --------------------------------------------------------------


def test_an_offline_machine_alerts_once_at_its_threshold_and_once_back_online(alice):
    """Evaluated every minute from its last report, a silent machine raises one `offline`
    event and one email between the contributor's threshold and a minute after it; repeated
    evaluations add nothing; its next report raises one `online` event."""
    email_channel(alice, "alice@example.com")
    rig = Rig(alice, ["solo"], "alice-rig")
    last = start_of_clock()
    rig.report(last)

    raised_at = None
    for minute in range(0, 21):
        now = last + minute * MINUTE
        run(now)
        if raised_at is None and events(alice, EventKind.OFFLINE):
            raised_at = now
    threshold = timedelta(minutes=AlertPreferences().offline_after_min)
    assert raised_at is not None
    assert last + threshold <= raised_at <= last + threshold + MINUTE

    (offline,) = events(alice, EventKind.OFFLINE)
    assert offline.title == "alice-rig is offline"
    assert offline.data["node"] == "alice-rig"
    assert [m.subject for m in mail.outbox] == ["alice-rig is offline"]
    assert mail.outbox[0].to == ["alice@example.com"]

    back = last + 21 * MINUTE
    rig.report(back)
    run(back)
    for minute in range(22, 26):
        rig.report(last + minute * MINUTE)
        run(last + minute * MINUTE)

    (online,) = events(alice, EventKind.ONLINE)
    assert online.title == "alice-rig is back online"
    assert "21 min after its last report" in online.body
    assert len(events(alice, EventKind.OFFLINE)) == 1
    assert [m.subject for m in mail.outbox] == ["alice-rig is offline", "alice-rig is back online"]


def test_the_offline_threshold_is_the_contributors_own(alice):
    """With offline_after_min = 3 the alert comes three minutes after the last report."""
    AlertPreferences.objects.create(contributor=alice, offline_after_min=3)
    email_channel(alice, "alice@example.com")
    rig = Rig(alice, ["solo"], "alice-rig")
    last = start_of_clock()
    rig.report(last)
    for minute in range(0, 3):
        run(last + minute * MINUTE)
    assert events(alice) == []
    run(last + 3 * MINUTE)
    assert [e.kind for e in events(alice)] == [EventKind.OFFLINE]
    assert len(emails("alice@example.com", "is offline")) == 1


def test_an_outage_shorter_than_the_threshold_sends_nothing(alice):
    """A machine silent for 9 minutes (threshold 10) and then reporting again is damped: no
    event, no email, however long it is evaluated afterwards."""
    email_channel(alice, "alice@example.com")
    rig = Rig(alice, ["solo"], "alice-rig")
    last = start_of_clock()
    rig.report(last)
    for minute in range(0, 9):
        run(last + minute * MINUTE)
    for minute in range(9, 30):
        rig.report(last + minute * MINUTE)
        run(last + minute * MINUTE)

    assert events(alice) == []
    assert mail.outbox == []


def test_a_flapping_machine_is_recorded_but_not_sent_past_the_flap_limit(alice):
    """After ALERT_FLAP_LIMIT notified outages within ALERT_FLAP_WINDOW_S, the next outage is
    an event marked damped, shown on the alerts page, and sent to no channel (nor its end)."""
    email_channel(alice, "alice@example.com")
    rig = Rig(alice, ["solo"], "alice-rig")
    t = start_of_clock()
    for _ in range(4):  # four outages of 10 minutes, 12 minutes apart
        rig.report(t)
        run(t + 2 * MINUTE)  # opens the condition
        run(t + 10 * MINUTE)  # notifies it
        t += 11 * MINUTE
        rig.report(t)
        run(t)  # back online
        t += MINUTE

    offline = events(alice, EventKind.OFFLINE)
    assert [e.damped for e in offline] == [False, False, False, True]
    assert "not sent, only kept here" in offline[-1].body
    assert not AlertDelivery.objects.filter(event=offline[-1]).exists()
    # Only the notified outages say they ended.
    assert len(events(alice, EventKind.ONLINE)) == 3
    assert len(emails("alice@example.com", "is offline")) == 3
    assert len(emails("alice@example.com", "is back online")) == 3
    page = signed_in(alice).get("/alerts/").content.decode()
    assert "not sent: flapping" in page


# --- 2. a GPU missing from its machine's reports -----------------------------------------------


def test_a_gpu_missing_from_its_machines_reports_alerts_with_its_uuid(alice):
    """The machine keeps reporting without one of its GPUs: one GPU-offline alert naming the
    missing GPU's uuid (not the machine), and one when it is back."""
    email_channel(alice, "alice@example.com")
    rig = Rig(alice, ["kept", "lost"], "alice-rig")
    kept, lost = rig.uuids
    last = start_of_clock()
    rig.report(last)
    for minute in range(0, 13):
        rig.report(last + minute * MINUTE, uuids=[kept])
        run(last + minute * MINUTE)

    (offline,) = events(alice, EventKind.OFFLINE)
    assert offline.data["gpu"] == lost
    assert "node" not in offline.data
    assert lost in offline.body and kept not in offline.body
    (message,) = mail.outbox
    assert message.subject == "NVIDIA H100 80GB HBM3 on alice-rig is offline"
    assert lost in message.body

    rig.report(last + 13 * MINUTE)
    run(last + 13 * MINUTE)
    (online,) = events(alice, EventKind.ONLINE)
    assert online.data["gpu"] == lost


# --- 3. temperature ----------------------------------------------------------------------------


def test_a_gpu_hot_for_its_duration_alerts_once_and_once_when_it_cools(alice):
    """At the threshold (85 °C, default) for temperature_for_min (5, default): one alert, no
    earlier; 4 °C below it is still hot (hysteresis); 6 °C below sends one resolved alert."""
    email_channel(alice, "alice@example.com")
    prefs = AlertPreferences()
    rig = Rig(alice, ["hot"], "alice-rig")
    start = start_of_clock()
    temperatures = [85] * 9 + [81] * 2 + [79] * 4
    first_alert = None
    for minute, celsius in enumerate(temperatures):
        now = start + minute * MINUTE
        rig.report(now, temperature_c=float(celsius))
        run(now)
        if first_alert is None and events(alice, EventKind.TEMPERATURE):
            first_alert = now
        if minute == 10:
            assert len(events(alice, EventKind.TEMPERATURE)) == 1  # 81 °C: not cool yet

    assert first_alert == start + timedelta(minutes=prefs.temperature_for_min)
    hot, cooled = events(alice, EventKind.TEMPERATURE)
    assert hot.title == "NVIDIA H100 80GB HBM3 on alice-rig is running hot: 85 °C"
    assert hot.data == {**hot.data, "gpu": rig.uuids[0]}
    assert cooled.title == "NVIDIA H100 80GB HBM3 on alice-rig cooled down"
    assert cooled.data["resolved"] is True
    assert cooled.created_at == start + 11 * MINUTE
    assert [m.subject for m in mail.outbox] == [hot.title, cooled.title]


def test_a_brief_temperature_spike_sends_nothing(alice):
    """95 °C for three minutes, under the five the contributor asked for: nothing at all."""
    email_channel(alice, "alice@example.com")
    rig = Rig(alice, ["spiky"], "alice-rig")
    start = start_of_clock()
    for minute, celsius in enumerate([95] * 3 + [60] * 12):
        rig.report(start + minute * MINUTE, temperature_c=float(celsius))
        run(start + minute * MINUTE)
    assert events(alice) == []
    assert mail.outbox == []


def test_the_temperature_threshold_is_the_contributors_own(alice):
    """temperature_c = 70 and temperature_for_min = 2: 72 °C for two minutes alerts."""
    AlertPreferences.objects.create(contributor=alice, temperature_c=70, temperature_for_min=2)
    email_channel(alice, "alice@example.com")
    rig = Rig(alice, ["warm"], "alice-rig")
    start = start_of_clock()
    for minute in range(0, 3):
        rig.report(start + minute * MINUTE, temperature_c=72.0)
        run(start + minute * MINUTE)
    (hot,) = events(alice, EventKind.TEMPERATURE)
    assert hot.created_at == start + 2 * MINUTE
    assert "at or above 70 °C for 2 min" in hot.body


# --- 4. before the epoch closes ----------------------------------------------------------------


def _at_risk_fleet(alice, bob):
    """alice: an online GPU, one she disabled on her GPU page, one offline; bob: one offline."""
    email_channel(alice, "alice@example.com")
    email_channel(bob, "bob@example.com")
    start = start_of_clock()
    rig = Rig(alice, ["fine", "off", "gone"], "alice-rig")
    bobs = Rig(bob, ["bobs"], "bob-rig")
    off = rig.uuids[1]
    rig.report(start + 30 * MINUTE)
    bobs.report(start + 30 * MINUTE)
    response = signed_in(alice).post(f"/gpus/{off}/settings", {"committed_memory_mib": ""})
    assert response.status_code == 302
    return start, rig, bobs


def _run_at_risk(start, rig, minute: int) -> None:
    """alice's first two GPUs report at `start + minute`, then the evaluator runs."""
    rig.report(start + minute * MINUTE, uuids=rig.uuids[:2])
    run(start + minute * MINUTE)


def test_before_the_epoch_closes_each_contributor_hears_which_gpus_earn_nothing(alice, bob):
    """Within ALERT_EPOCH_WARNING_S of the open epoch's end: one `epoch_at_risk` event per
    contributor, listing only their GPUs that earn nothing (disabled, offline) with the
    reason; once per epoch."""
    start, rig, bobs = _at_risk_fleet(alice, bob)
    fine, off, gone = rig.uuids
    _run_at_risk(start, rig, 44)  # 16 minutes before the end: too early
    assert events(kind=EventKind.EPOCH_AT_RISK) == []

    _run_at_risk(start, rig, 46)
    (alices,) = events(alice, EventKind.EPOCH_AT_RISK)
    reasons = {g["uuid"]: g["reason"] for g in alices.data["gpus"]}
    assert reasons == {off: "disabled", gone: "offline"}
    assert f"({off}) on alice-rig: This GPU was disabled by its owner." in alices.body
    assert f"({gone}) on alice-rig: Offline: no report since " in alices.body
    assert fine not in alices.body
    assert alices.data["epoch_end"] == (start + timedelta(hours=1)).isoformat()
    assert alices.title.startswith("2 GPUs will earn nothing in the epoch closing at")
    (bobs_event,) = events(bob, EventKind.EPOCH_AT_RISK)
    assert [g["uuid"] for g in bobs_event.data["gpus"]] == bobs.uuids
    assert len(emails("alice@example.com", "will earn nothing")) == 1
    assert len(emails("bob@example.com", "will earn nothing")) == 1

    _run_at_risk(start, rig, 50)
    _run_at_risk(start, rig, 59)
    assert len(events(kind=EventKind.EPOCH_AT_RISK)) == 2
    assert len([m for m in mail.outbox if "will earn nothing" in m.subject]) == 2


@pytest.mark.gpu_verification
def test_before_the_epoch_closes_an_unverified_gpu_is_listed(alice, bob):
    """With proof of GPU on, a GPU that reports but never passed a challenge is at risk too."""
    start, rig, _ = _at_risk_fleet(alice, bob)
    fine, off, gone = rig.uuids
    _run_at_risk(start, rig, 46)
    (alices,) = events(alice, EventKind.EPOCH_AT_RISK)
    reasons = {g["uuid"]: g["reason"] for g in alices.data["gpus"]}
    assert reasons[fine] == "unverified"
    assert reasons[off] == "disabled"
    assert gone in reasons  # offline, and unverified too: the first reason found is given
    assert f"({fine}) on alice-rig: No proof-of-GPU challenge passed yet." in alices.body


# --- 5. after settlement: earned nothing -------------------------------------------------------


def _held_out_rig(owner, uuids):
    """A rig of `owner` whose first GPU its own agent flags (5 kW: implausible)."""
    rig = support.Rig(owner, [support.gpu(u, support.H100) for u in uuids])
    (impossible,) = support.samples(uuids[0], start_of_clock(6), seconds=range(1))
    answer = rig.post([{**impossible, "power_w": 5000}])
    assert answer["rejected"] == [{"index": 0, "error": "implausible_telemetry"}]
    return rig


def test_a_gpu_held_out_of_a_settled_epoch_alerts_once_with_its_reason(alice, bob, settings):
    """A flagged GPU earns nothing in two settled epochs: one `earned_nothing` event with the
    reason; the next epoch, within ALERT_REPEAT_S, repeats nothing; past it, it does. bob's GPU,
    held out only because he disabled it, raises nothing."""
    email_channel(alice, "alice@example.com")
    email_channel(bob, "bob@example.com")
    first = start_of_clock(5)
    flagged, fine = support.nvml_uuid("flagged"), support.nvml_uuid("fine")
    rig = _held_out_rig(alice, [flagged, fine])
    bobs = support.Rig(bob, [support.gpu(support.B1, support.H100)])
    response = signed_in(bob).post(f"/gpus/{support.B1}/settings", {"committed_memory_mib": ""})
    assert response.status_code == 302
    for hour in range(3):
        start = first + timedelta(hours=hour)
        rig.report(support.samples(flagged, start) + support.samples(fine, start))
        bobs.report(support.samples(support.B1, start))
    support.ingest_all()
    evaluate.run(timezone.now())  # the evaluator starts reading settlements from here

    epoch = support.settle(first)
    assert set(HeldOut.objects.filter(epoch=epoch).values_list("reason", flat=True)) == {
        HeldOut.Reason.FLAGGED,
        HeldOut.Reason.DISABLED,
    }
    run(timezone.now())
    (event,) = events(kind=EventKind.EARNED_NOTHING)
    assert event.contributor == alice
    assert event.data["gpus"] == [{"uuid": flagged, "reason": HeldOut.Reason.FLAGGED}]
    assert "Open flag: implausible telemetry." in event.body
    assert fine not in event.body
    assert len(emails("alice@example.com", "earned nothing")) == 1

    support.settle(first + timedelta(hours=1))
    run(timezone.now())
    assert len(events(kind=EventKind.EARNED_NOTHING)) == 1
    # Disabled by its owner: no "earned nothing" (a real-time at-risk warning may come).
    assert emails("bob@example.com", "earned nothing") == []

    settings.ALERT_REPEAT_S = 60
    support.settle(first + timedelta(hours=2))
    later = timezone.now() + timedelta(minutes=2)
    run(later)
    again = events(kind=EventKind.EARNED_NOTHING)
    assert [e.contributor for e in again] == [alice, alice]
    assert again[-1].data["gpus"] == [{"uuid": flagged, "reason": HeldOut.Reason.FLAGGED}]
    assert len(emails("alice@example.com", "earned nothing")) == 2


def test_two_epochs_settled_at_once_alert_their_gpu_and_reason_once(alice):
    """The evaluator finds two settled epochs holding the same GPU out for the same reason:
    one event, not one per epoch (the repeat rule holds within one run too)."""
    email_channel(alice, "alice@example.com")
    first = start_of_clock(4)
    flagged = support.nvml_uuid("flagged")
    rig = _held_out_rig(alice, [flagged])
    for hour in range(2):
        rig.report(support.samples(flagged, first + timedelta(hours=hour)))
    support.ingest_all()
    evaluate.run(timezone.now())
    settled = support.settlement.settle_due(until=first + timedelta(hours=2))
    assert len(settled) == 2
    run(timezone.now())
    assert len(events(alice, EventKind.EARNED_NOTHING)) == 1
    assert len(emails("alice@example.com", "earned nothing")) == 1


# --- 6. verification failed, claims ------------------------------------------------------------


@pytest.mark.gpu_verification
def test_a_failed_proof_of_gpu_challenge_alerts_once(alice, settings):
    """The agent commits a root its rows do not match: the challenge fails (bad path) and one
    `verification_failed` event names the GPU and the reason."""
    settings.GPU_VERIFICATION_N = 64
    settings.GPU_VERIFICATION_MAX_ROUNDS = 3
    settings.GPU_VERIFICATION_CHECKS = 4
    email_channel(alice, "alice@example.com")
    agent = Agent(enroll(alice, [h100("rig")], hostname="alice-rig"))
    response = agent.send(batch([]))
    (challenge,) = response.json()["challenges"]
    run(timezone.now())

    solution = honest(challenge)
    url = COMMIT.format(id=challenge["challenge_id"])
    committed = agent.client.post(
        url, {"root": "ab" * 32, "elapsed_s": 0.01}, content_type="application/json",
        headers=agent.auth(),
    )  # fmt: skip
    assert committed.status_code == 200, committed.content
    rows = reveal_rows(solution, committed.json()["reveal"])
    revealed = agent.client.post(
        REVEAL.format(id=challenge["challenge_id"]), {"rows": rows},
        content_type="application/json", headers=agent.auth(),
    )  # fmt: skip
    assert revealed.status_code == 202, revealed.content
    decided = Challenge.objects.get(public_id=challenge["challenge_id"])
    check_challenge(decided.pk)
    decided.refresh_from_db()
    assert decided.status == Challenge.Status.FAILED

    run(timezone.now())
    run(timezone.now())
    (event,) = events(alice, EventKind.VERIFICATION_FAILED)
    assert event.data == {"gpu": h100("rig")["uuid"], "reason": Challenge.Reason.BAD_PATH}
    assert event.title == "NVIDIA H100 80GB HBM3 on alice-rig failed its proof-of-GPU challenge"
    assert len(emails("alice@example.com", "failed its proof-of-GPU")) == 1


@pytest.fixture
def evm(settings, monkeypatch):
    return start_evm(settings, monkeypatch)


def test_a_confirmed_claim_and_an_expired_voucher_alert_once_each(evm, alice, settings):
    """The watcher confirms a claim sent on-chain, then expires a voucher past its deadline:
    one `claim_confirmed` and one `voucher_expired` event, each once."""
    email_channel(alice, "alice@example.com")
    client = signed_in(alice)
    run(timezone.now())

    credit(alice, 7 * support.OMNIT)
    voucher = post_claim(client).json()
    evm.send(voucher["tx"])
    evm.mine()
    assert evm.watch().confirmed == 1
    run(timezone.now())
    run(timezone.now())
    (confirmed,) = events(alice, EventKind.CLAIM_CONFIRMED)
    assert confirmed.title == "Claim confirmed: 7.0000 OMNIT"
    assert confirmed.data["claim"] == voucher["claim_id"]

    settings.CLAIM_VOUCHER_TTL_S = 60
    credit(alice, 5 * support.OMNIT)
    late = post_claim(client).json()
    evm.travel_to(late["deadline"] + 1)
    evm.mine(CONFIRMATIONS + 1)
    assert evm.watch().expired == 1
    run(timezone.now())
    run(timezone.now())
    (expired,) = events(alice, EventKind.VOUCHER_EXPIRED)
    assert expired.title == "Voucher expired: 5.0000 OMNIT"
    assert len(events(alice, EventKind.CLAIM_CONFIRMED)) == 1
    assert [m.subject for m in mail.outbox] == [confirmed.title, expired.title]


# --- 7. the daily digest -----------------------------------------------------------------------


def test_the_daily_digest_comes_once_a_local_day_after_the_digest_hour(alice, bob):
    """alice in Asia/Tokyo, bob in America/Los_Angeles, evaluated every 30 minutes for a day
    and a half: each gets one digest per local day at the first evaluation after 08:00 local
    time, none before; carol's channel does not take digests and gets none."""
    carol = Contributor.objects.create(username="carol")
    AlertPreferences.objects.create(contributor=alice, time_zone="Asia/Tokyo")
    AlertPreferences.objects.create(contributor=bob, time_zone="America/Los_Angeles")
    email_channel(alice, "alice@example.com", events=[*DEFAULT_EVENTS, EventKind.DIGEST])
    email_channel(bob, "bob@example.com", events=[EventKind.DIGEST])
    email_channel(carol, "carol@example.com")

    # 2030-01-15 15:00 UTC is 00:00 on the 16th in Tokyo and 07:00 on the 15th in Los Angeles.
    first = datetime(2030, 1, 15, 15, 0, tzinfo=UTC)
    for step in range(52):  # until 2030-01-16 16:30 UTC
        run(first + step * timedelta(minutes=30))

    sent = [(e.contributor, e.key, e.created_at) for e in events(kind=EventKind.DIGEST)]
    assert sent == [
        # 08:00 on the 15th in Los Angeles
        (bob, "digest:2030-01-15", datetime(2030, 1, 15, 16, 0, tzinfo=UTC)),
        # 08:00 on the 16th in Tokyo
        (alice, "digest:2030-01-16", datetime(2030, 1, 15, 23, 0, tzinfo=UTC)),
        # 08:00 on the 16th in Los Angeles
        (bob, "digest:2030-01-16", datetime(2030, 1, 16, 16, 0, tzinfo=UTC)),
    ]
    assert len(emails("alice@example.com", "Your GPUs earned")) == 1
    assert len(emails("bob@example.com", "Your GPUs earned")) == 2
    assert emails("carol@example.com") == []


# --- 8. set-based: queries do not grow with the fleet ------------------------------------------


def _fleet_queries(fleet: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """Build a fleet, count the queries of the run that opens its conditions and of the run
    that notifies them, and roll it all back; (opening queries, notifying queries, events).

    Each (hot, missing, silent) of `fleet` is one contributor with preferences, an email and a
    webhook channel, a machine that reports `hot` GPUs at 90 °C and stops reporting its
    `missing` ones, and a machine of `silent` GPUs that stops reporting."""
    start = start_of_clock()
    with transaction.atomic():
        reporting, expected = [], 0
        for i, (hot, missing, silent) in enumerate(fleet):
            owner = Contributor.objects.create(username=f"fleet-{len(fleet)}-{i}")
            zone = ["UTC", "Europe/Berlin", "Asia/Tokyo"][i % 3]
            AlertPreferences.objects.create(contributor=owner, time_zone=zone)
            email_channel(owner, f"owner{i}@example.com")
            AlertChannel.objects.create(
                contributor=owner, kind=AlertChannel.Kind.WEBHOOK,
                target=f"https://hooks.example/{i}", secret="whsec_x",
                verified_at=timezone.now(), events=list(DEFAULT_EVENTS),
            )  # fmt: skip
            tag = f"{len(fleet)}-{i}"
            if hot + missing:
                rig = Rig(owner, [f"hot-{tag}-{g}" for g in range(hot + missing)], f"hot-{i}")
                rig.report(start, temperature_c=90.0)
                reporting.append(rig.report_only(rig.uuids[:hot]))
            if silent:
                Rig(owner, [f"off-{tag}-{g}" for g in range(silent)], f"off-{i}").report(start)
            expected += hot + missing + (1 if silent else 0)

        opening = start + 2 * MINUTE
        for report in reporting:
            report(opening, temperature_c=90.0)
        with CaptureQueriesContext(connection) as opened:
            counts = evaluate.run(opening)
        assert counts["opened"] == expected

        notifying = start + 10 * MINUTE
        for report in reporting:
            report(notifying, temperature_c=90.0)
        with CaptureQueriesContext(connection) as notified:
            counts = evaluate.run(notifying)
        assert counts["notified"] == expected
        assert counts["deliveries"] == 2 * expected
        raised = AlertEvent.objects.count()
        assert raised == expected
        transaction.set_rollback(True)
    return len(opened), len(notified), raised


@pytest.mark.parametrize(
    ("small", "large"),
    [
        # 2 GPUs: one hot, one on a silent machine; 40: 8 contributors with 3 hot and 2 silent.
        ([(1, 0, 0), (0, 0, 1)], [(3, 0, 2)] * 8),
        # 3 GPUs, one of them missing from its machine's reports; 40 with 8 missing.
        ([(1, 1, 0), (0, 0, 1)], [(2, 1, 2)] * 8),
    ],
)
def test_evaluation_takes_the_same_queries_for_a_few_or_40_gpus(small, large):
    """Several contributors with channels, machines offline, GPUs missing or running hot: the
    opening run and the notifying run take as many queries for 2 (or 3) GPUs as for 40."""
    assert sum(map(sum, large)) == 40
    few, many = _fleet_queries(small), _fleet_queries(large)
    assert many[2] == 8 * (large[0][0] + large[0][1] + 1)  # one event per condition
    assert few[:2] == many[:2], f"{sum(map(sum, small))} GPUs: {few[:2]}, 40 GPUs: {many[:2]}"


# --- 9. each contributor hears about their own machines ----------------------------------------


def test_a_contributor_only_hears_about_their_own_machines(alice, bob):
    """bob's machine goes offline and runs hot before that, alice's keeps reporting: every event
    and email bob's machine raises is bob's; alice's history and inbox hold none of it."""
    email_channel(alice, "alice@example.com")
    email_channel(bob, "bob@example.com")
    mine = Rig(alice, ["alices"], "alice-rig")
    his = Rig(bob, ["bobs"], "bob-rig")
    start = start_of_clock()
    for minute in range(0, 25):
        now = start + minute * MINUTE
        mine.report(now)
        if minute < 8:
            his.report(now, temperature_c=99.0)
        run(now)

    assert events(alice) == []
    assert {e.kind for e in events(bob)} == {EventKind.OFFLINE, EventKind.TEMPERATURE}
    assert all(m.to == ["bob@example.com"] for m in mail.outbox)
    assert emails("bob@example.com", "bob-rig is offline")
    page = signed_in(alice).get("/alerts/").content.decode()
    assert "bob-rig" not in page and his.uuids[0] not in page
