"""Finding what contributors should hear about, once a minute, in a few set-based queries.

Only contributors with an active channel are looked at. Each step reads its candidates in one
query, whatever the number of GPUs, and raises events in bulk; a test counts the queries. The
whole run is one transaction under a row lock, so two evaluators never raise an event twice and
a crashed run raises nothing (the next one does it all):

- machines (`node_offline`) and GPUs (`gpu_offline`: its machine reports, it does not) open a
  condition when they pass the network's online window, alert once they have been offline for
  the contributor's threshold, and alert "back online" when they report again; outages that end
  sooner are never sent, and a subject past ALERT_FLAP_LIMIT alerts in ALERT_FLAP_WINDOW_S is
  recorded but not sent (flapping);
- GPUs at or above the contributor's temperature for their number of minutes (`hot`), and back
  5 °C below it;
- ALERT_EPOCH_WARNING_S before the open epoch closes: the GPUs that reported in it but would
  earn nothing in it, and why (offline now, disabled, unverified, held out), one message per
  contributor; the same GPU and reason again only after ALERT_REPEAT_S;
- after settlement, from cursors: GPUs held out of a settled epoch (the statement's reason),
  failed proof-of-GPU challenges, confirmed claims, expired vouchers;
- the daily digest at ALERT_DIGEST_HOUR of the contributor's time zone.
"""

import zoneinfo
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from contributors.alerts import delivery
from contributors.models import (
    GPU,
    AlertChannel,
    AlertCondition,
    AlertCursor,
    AlertEvent,
    AlertPreferences,
    Challenge,
    EventKind,
    Node,
)

DEFAULT_PREFS = AlertPreferences()
# Machines and GPUs silent for longer than this are left alone (retired, not offline).
FORGOTTEN_AFTER = timedelta(days=7)
HYSTERESIS_C = 5
Kind = AlertCondition.Kind


def run(now: datetime | None = None) -> dict:
    """One evaluation: raise what is due, fan it out, queue what must be sent."""
    now = now or timezone.now()
    with transaction.atomic():
        # One evaluator at a time (a row lock on PostgreSQL; SQLite writes one at a time).
        lock, _ = AlertCursor.objects.get_or_create(name="evaluator", defaults={"at": now})
        AlertCursor.objects.select_for_update().filter(pk=lock.pk).update(at=now)
        ctx = _Context(now)
        counts = {
            "opened": _open_offline(ctx) + _open_hot(ctx),
            "resolved": _resolve(ctx),
            "notified": _notify(ctx),
            "epoch_at_risk": _epoch_at_risk(ctx),
            "earned_nothing": _earned_nothing(ctx),
            "verification_failed": _verification_failed(ctx),
            "claims": _claims(ctx),
            "digests": _digests(ctx),
        }
        counts["deliveries"] = delivery.fan_out(now)
    counts["queued"] = delivery.sweep(now)
    return counts


class _Context:
    def __init__(self, now: datetime):
        self.now = now
        self.cut = now - timedelta(seconds=3 * settings.AGENT_REPORT_INTERVAL_S)
        self.subscribers = AlertChannel.objects.filter(
            enabled=True, verified_at__isnull=False, unsubscribed_at__isnull=True
        ).values("contributor_id")
        self._prefs: dict[int, AlertPreferences] = {}

    def prefs(self, contributor_ids) -> dict[int, AlertPreferences]:
        missing = set(contributor_ids) - set(self._prefs)
        if missing:
            self._prefs.update(delivery._prefs_of(missing))
            for pk in missing:
                self._prefs.setdefault(pk, DEFAULT_PREFS)
        return self._prefs


def local(moment: datetime, prefs: AlertPreferences) -> str:
    zone = zoneinfo.ZoneInfo(prefs.time_zone or "UTC")
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days"


def _raise(rows: list[AlertEvent]) -> int:
    """Insert events; one already raised (same contributor and key) is skipped."""
    AlertEvent.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
    return len(rows)


# Streams read by time are read again this far behind their cursor: a row is stamped
# (decided_at, confirmed_at) before its transaction commits, so one committed after a read may
# carry an earlier time. Events raised twice are skipped by their unique key.
OVERLAP = timedelta(minutes=10)


def _cursor(name: str, now: datetime) -> AlertCursor:
    """A stream's cursor; a new one starts now (history before alerts existed is not sent)."""
    cursor, _ = AlertCursor.objects.get_or_create(name=name, defaults={"at": now})
    return cursor


def _portal(path: str) -> str:
    return settings.PORTAL_URL + path


# --- offline and temperature ----------------------------------------------------------------


def _open_offline(ctx: _Context) -> int:
    is_open = AlertCondition.objects.filter(resolved_at__isnull=True)
    nodes = list(
        Node.objects.filter(
            revoked_at__isnull=True,
            last_seen_at__lt=ctx.cut,
            last_seen_at__gte=ctx.now - FORGOTTEN_AFTER,
            owner_id__in=ctx.subscribers,
        )
        .exclude(Exists(is_open.filter(kind=Kind.NODE_OFFLINE, node=OuterRef("pk"))))
        .values_list("pk", "owner_id", "last_seen_at")
    )
    gpus = list(
        GPU.objects.filter(
            enabled=True,
            mig_parent__isnull=True,
            node__revoked_at__isnull=True,
            node__last_seen_at__gte=ctx.cut,
            last_seen_at__lt=ctx.cut,
            last_seen_at__gte=ctx.now - FORGOTTEN_AFTER,
            node__owner_id__in=ctx.subscribers,
        )
        .exclude(Exists(is_open.filter(kind=Kind.GPU_OFFLINE, gpu=OuterRef("pk"))))
        .values_list("pk", "node__owner_id", "last_seen_at")
    )
    prefs = ctx.prefs({owner for _, owner, _ in nodes + gpus})
    rows = [
        AlertCondition(
            kind=kind,
            contributor_id=owner,
            started_at=seen,
            notify_after=seen + timedelta(minutes=prefs[owner].offline_after_min),
            **{field: pk},
        )
        for kind, field, subjects in (
            (Kind.NODE_OFFLINE, "node_id", nodes),
            (Kind.GPU_OFFLINE, "gpu_id", gpus),
        )
        for pk, owner, seen in subjects
    ]
    AlertCondition.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def _temperature_limit(owner: str):
    """The owner's temperature limit, by a join (a correlated subquery per GPU cost twice as
    much at 100,000 GPUs: bench/alerts)."""
    return Coalesce(
        F(f"{owner}__alert_preferences__temperature_c"), Value(DEFAULT_PREFS.temperature_c)
    )


def _open_hot(ctx: _Context) -> int:
    hot = list(
        GPU.objects.filter(
            enabled=True,
            last_sample_at__gte=ctx.cut,
            last_temperature_c__isnull=False,
            node__owner_id__in=ctx.subscribers,
        )
        .annotate(limit=_temperature_limit("node__owner"))
        .filter(last_temperature_c__gte=F("limit"))
        .exclude(
            Exists(
                AlertCondition.objects.filter(
                    kind=Kind.HOT, gpu=OuterRef("pk"), resolved_at__isnull=True
                )
            )
        )
        .values_list("pk", "node__owner_id")
    )
    prefs = ctx.prefs({owner for _, owner in hot})
    rows = [
        AlertCondition(
            kind=Kind.HOT,
            contributor_id=owner,
            gpu_id=pk,
            started_at=ctx.now,
            notify_after=ctx.now + timedelta(minutes=prefs[owner].temperature_for_min),
        )
        for pk, owner in hot
    ]
    AlertCondition.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def _resolve(ctx: _Context) -> int:
    """Close the conditions that ended; the notified ones say so."""
    open_ = AlertCondition.objects.filter(resolved_at__isnull=True)
    ended = (
        open_.filter(kind=Kind.NODE_OFFLINE).filter(
            Q(node__last_seen_at__gte=ctx.cut) | Q(node__revoked_at__isnull=False)
        )
        | open_.filter(kind=Kind.GPU_OFFLINE).filter(
            Q(gpu__last_seen_at__gte=ctx.cut)
            | Q(gpu__enabled=False)
            | Q(gpu__node__revoked_at__isnull=False)
        )
        | open_.filter(kind=Kind.HOT)
        .annotate(limit=_temperature_limit("contributor"))
        .filter(
            Q(gpu__last_temperature_c__lt=F("limit") - HYSTERESIS_C)
            | Q(gpu__last_temperature_c__isnull=True)
            | Q(gpu__last_sample_at__lt=ctx.cut)
            | Q(gpu__enabled=False)
        )
    )
    rows = list(
        ended.values(
            "pk", "kind", "contributor_id", "started_at", "notified_at", "damped",
            "node__name", "node__revoked_at", "gpu__name", "gpu__uuid", "gpu__enabled",
            "gpu__node__name", "gpu__last_temperature_c", "gpu__last_sample_at",
        )
    )  # fmt: skip
    if not rows:
        return 0
    prefs = ctx.prefs({r["contributor_id"] for r in rows})
    events = []
    for row in rows:
        if row["notified_at"] is None or row["damped"]:
            continue
        p = prefs[row["contributor_id"]]
        if row["kind"] == Kind.HOT:
            if row["gpu__last_temperature_c"] is None or row["gpu__last_sample_at"] < ctx.cut:
                continue  # it went silent: the offline alert speaks for it
            title = f"{row['gpu__name']} on {row['gpu__node__name']} cooled down"
            body = (
                f"{row['gpu__name']} ({row['gpu__uuid']}) on {row['gpu__node__name']} is at "
                f"{row['gpu__last_temperature_c']:.0f} °C again, below {p.temperature_c} °C."
            )
            kind, subject = EventKind.TEMPERATURE, {"gpu": row["gpu__uuid"]}
        else:
            if row["node__revoked_at"] is not None or row["gpu__enabled"] is False:
                continue  # the owner took it out: nothing to celebrate
            name = row["node__name"] or f"{row['gpu__name']} on {row['gpu__node__name']}"
            took = duration(ctx.now - row["started_at"])
            title = f"{name} is back online"
            body = f"{name} reports again, {took} after its last report. It earns again."
            kind = EventKind.ONLINE
            subject = (
                {"node": row["node__name"]} if row["node__name"] else {"gpu": row["gpu__uuid"]}
            )
        events.append(
            AlertEvent(
                contributor_id=row["contributor_id"],
                kind=kind,
                key=f"condition:{row['pk']}:resolved",
                title=title,
                body=body + f"\n\n{_portal('/nodes/')}\n(Times in {p.time_zone}.)",
                data={**subject, "condition": row["pk"], "resolved": True},
                created_at=ctx.now,
            )
        )
    _raise(events)
    AlertCondition.objects.filter(pk__in=[r["pk"] for r in rows]).update(resolved_at=ctx.now)
    return len(rows)


def _notify(ctx: _Context) -> int:
    due = list(
        AlertCondition.objects.filter(
            resolved_at__isnull=True, notified_at__isnull=True, notify_after__lte=ctx.now
        ).values(
            "pk", "kind", "contributor_id", "node_id", "gpu_id", "started_at",
            "node__name", "gpu__name", "gpu__uuid", "gpu__node__name",
            "gpu__last_temperature_c",
        )
    )  # fmt: skip
    if not due:
        return 0
    window = ctx.now - timedelta(seconds=settings.ALERT_FLAP_WINDOW_S)
    recent = AlertCondition.objects.filter(
        kind__in=[Kind.NODE_OFFLINE, Kind.GPU_OFFLINE], notified_at__gte=window, damped=False
    )
    flaps = {
        ("node", r["node_id"]): r["n"]
        for r in recent.filter(node_id__in=[d["node_id"] for d in due if d["node_id"]])
        .values("node_id")
        .annotate(n=Count("pk"))
    }
    flaps.update(
        {
            ("gpu", r["gpu_id"]): r["n"]
            for r in recent.filter(
                kind=Kind.GPU_OFFLINE, gpu_id__in=[d["gpu_id"] for d in due if d["gpu_id"]]
            )
            .values("gpu_id")
            .annotate(n=Count("pk"))
        }
    )
    prefs = ctx.prefs({d["contributor_id"] for d in due})
    events, damped = [], []
    for row in due:
        p = prefs[row["contributor_id"]]
        since = local(row["started_at"], p)
        if row["kind"] == Kind.HOT:
            name = f"{row['gpu__name']} on {row['gpu__node__name']}"
            temp = row["gpu__last_temperature_c"] or 0
            title = f"{name} is running hot: {temp:.0f} °C"
            body = (
                f"{row['gpu__name']} ({row['gpu__uuid']}) on {row['gpu__node__name']} has been "
                f"at or above {p.temperature_c} °C for {p.temperature_for_min} min (now "
                f"{temp:.0f} °C). Sustained heat throttles a GPU and shortens its life: check "
                "its fans, airflow and room temperature."
            )
            kind, subject, flapping = EventKind.TEMPERATURE, {"gpu": row["gpu__uuid"]}, False
        else:
            if row["kind"] == Kind.NODE_OFFLINE:
                name = row["node__name"]
                subject = {"node": name}
                what = "Its GPUs earn nothing until it reports again."
                flapping = flaps.get(("node", row["node_id"]), 0) >= settings.ALERT_FLAP_LIMIT
            else:
                name = f"{row['gpu__name']} on {row['gpu__node__name']}"
                subject = {"gpu": row["gpu__uuid"]}
                what = (
                    f"Its machine reports, but without this GPU ({row['gpu__uuid']}): check "
                    "`nvidia-smi` there (a GPU that fell off the bus needs a reboot)."
                )
                flapping = flaps.get(("gpu", row["gpu_id"]), 0) >= settings.ALERT_FLAP_LIMIT
            title = f"{name} is offline"
            body = (
                f"{name} has sent no report since {since} "
                f"({duration(ctx.now - row['started_at'])} ago). {what} On the machine, "
                "`systemctl status omnitensor-agent` shows whether the agent runs."
            )
            kind = EventKind.OFFLINE
            if flapping:
                body += (
                    f"\n\nIt went offline more than {settings.ALERT_FLAP_LIMIT} times in "
                    f"{duration(timedelta(seconds=settings.ALERT_FLAP_WINDOW_S))}: this one is "
                    "not sent, only kept here, until it is stable."
                )
        if flapping:
            damped.append(row["pk"])
        events.append(
            AlertEvent(
                contributor_id=row["contributor_id"],
                kind=kind,
                key=f"condition:{row['pk']}:open",
                title=title,
                body=body + f"\n\n{_portal('/nodes/')}\n(Times in {p.time_zone}.)",
                data={**subject, "condition": row["pk"], "since": row["started_at"].isoformat()},
                created_at=ctx.now,
                damped=flapping,
            )
        )
    _raise(events)
    AlertCondition.objects.filter(pk__in=[d["pk"] for d in due]).update(notified_at=ctx.now)
    if damped:
        AlertCondition.objects.filter(pk__in=damped).update(damped=True)
    return len(events)


# --- before the epoch closes ----------------------------------------------------------------


def _epoch_at_risk(ctx: _Context) -> int:
    from rewards import settlement

    window = settlement.window_from(ctx.now)
    # window_from(now) starts the window at `now`; the epoch began on its policy's grid.
    length = timedelta(seconds=window.policy.epoch_length_s)
    epoch_start = settlement.UNIX_EPOCH + (ctx.now - settlement.UNIX_EPOCH) // length * length
    warn = min(settings.ALERT_EPOCH_WARNING_S, length.total_seconds() / 2)
    if ctx.now < window.end - timedelta(seconds=warn):
        return 0
    cursor = _cursor("epoch_at_risk", window.start)
    if cursor.at >= window.end:
        return 0
    cursor.at = window.end
    cursor.save(update_fields=["at"])
    # GPUs that reported in this epoch: one silent all along earns nothing already, and its
    # offline alert said so. Those sure to earn are left in the database (_surely_earning).
    gpus = {
        g.pk: g
        for g in GPU.objects.filter(
            node__revoked_at__isnull=True,
            node__owner_id__in=ctx.subscribers,
            last_seen_at__gte=epoch_start,
        )
        .exclude(_surely_earning(window.end, ctx.cut))
        .select_related("node")
    }
    if not gpus:
        return 0
    held = settlement.held_out_reasons(gpus, window.end)
    told = _told(EventKind.EPOCH_AT_RISK, {g.node.owner_id for g in gpus.values()}, ctx)
    at_risk: dict[int, list[tuple[GPU, str, str]]] = {}
    for pk, gpu in gpus.items():
        if gpu.mig_parent_id is not None:
            continue
        if pk in held:
            code, reason = held[pk]
        elif gpu.status(ctx.now) == "offline":
            code, reason = "offline", f"Offline: no report since {gpu.last_seen_at:%H:%M} UTC."
        else:
            continue
        if (gpu.node.owner_id, gpu.uuid, code) not in told:
            at_risk.setdefault(gpu.node.owner_id, []).append((gpu, code, reason))
    prefs = ctx.prefs(at_risk)
    events = []
    for owner, items in at_risk.items():
        closes = local(window.end, prefs[owner])
        lines = [f"- {g.name} ({g.uuid}) on {g.node.name}: {why}" for g, _, why in items]
        n = len(items)
        events.append(
            AlertEvent(
                contributor_id=owner,
                kind=EventKind.EPOCH_AT_RISK,
                key=f"epoch_at_risk:{window.end:%Y%m%dT%H%M%S}",
                title=f"{n} GPU{'s' if n > 1 else ''} will earn nothing in the epoch closing "
                f"at {closes}",
                body=(
                    f"The epoch closes at {closes}. As things stand, these GPUs earn nothing "
                    "in it. What is fixed before then still counts for the rest of the epoch:"
                    "\n\n" + "\n".join(lines) + f"\n\n{_portal('/nodes/')}"
                ),
                data={
                    "epoch_end": window.end.isoformat(),
                    "gpus": [
                        {"uuid": g.uuid, "reason": code, "detail": why} for g, code, why in items
                    ],
                },
                created_at=ctx.now,
            )
        )
    return _raise(events)


def _surely_earning(end: datetime, cut: datetime) -> Q:
    """GPUs certain to earn in the epoch ending `end` and online: a physical GPU without MIG
    instances, enabled, reporting, without an open flag or a failed probe, and (with proof of
    GPU on) with a pass for its present model and memory in GPU_VERIFICATION_VALID_S and no
    failure or pass for other hardware since then: its newest decided challenge is that pass.

    Only a shortcut: whatever is not surely earning goes through
    `settlement.held_out_reasons`, which decides. So this must never call a GPU sure that
    settlement could hold out; keep it in step with held_out_reasons. At 100,000 GPUs it
    leaves the few hundred worth a look instead of loading every GPU and its challenges (the
    at-risk minute: 22 s down to 2.5 s, bench/alerts/README.md)."""
    from contributors.models import GpuFlag, Probe
    from contributors.verification import challenges

    sure = Q(enabled=True, mig_parent__isnull=True, last_seen_at__gte=cut)
    sure &= ~Exists(GPU.objects.filter(mig_parent=OuterRef("pk")))
    sure &= ~Exists(GpuFlag.objects.filter(gpu=OuterRef("pk"), cleared_at__isnull=True))
    sure &= ~Exists(Probe.objects.filter(gpu=OuterRef("pk"), ok=False, at__lt=end))
    if challenges.enabled():
        since = end - timedelta(seconds=settings.GPU_VERIFICATION_VALID_S)
        decided = Challenge.objects.filter(
            gpu=OuterRef("pk"), decided_at__gt=since, decided_at__lte=end
        )
        same = {
            "claimed_name": OuterRef("name"),
            "claimed_memory_mib": OuterRef("memory_total_mib"),
        }
        sure &= Exists(decided.filter(status=Challenge.Status.PASSED, **same))
        sure &= ~Exists(decided.filter(status=Challenge.Status.FAILED))
        sure &= ~Exists(decided.filter(status=Challenge.Status.PASSED).exclude(**same))
    return sure


def _told(kind: str, owners, ctx: _Context) -> set[tuple[int, str, str]]:
    """(contributor, GPU uuid, reason) already told in an event of `kind` within
    ALERT_REPEAT_S: the same news is not sent again every epoch."""
    since = ctx.now - timedelta(seconds=settings.ALERT_REPEAT_S)
    told = set()
    rows = AlertEvent.objects.filter(
        kind=kind, contributor_id__in=list(owners), created_at__gte=since
    ).values_list("contributor_id", "data")
    for owner, data in rows:
        told.update((owner, g["uuid"], g["reason"]) for g in data.get("gpus", []))
    return told


# --- after the fact: settled epochs, challenges, claims -------------------------------------


def _earned_nothing(ctx: _Context) -> int:
    from rewards.models import Epoch, HeldOut

    # Epochs are read by primary key: settlement writes them one at a time, in order (a unique
    # start stops a second settler), so a higher key is always committed later; a time stamped
    # inside the transaction would not be.
    cursor, created = AlertCursor.objects.get_or_create(name="settled", defaults={"at": ctx.now})
    if created:  # epochs settled before alerts existed are not told
        cursor.position = Epoch.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        cursor.save(update_fields=["position"])
    epochs = list(
        Epoch.objects.filter(status=Epoch.Status.SETTLED, pk__gt=cursor.position).order_by("pk")[
            :50
        ]
    )
    if not epochs:
        return 0
    cursor.position, cursor.at = epochs[-1].pk, ctx.now
    cursor.save(update_fields=["position", "at"])
    held = list(
        HeldOut.objects.filter(epoch__in=epochs, contributor_id__in=ctx.subscribers)
        .exclude(reason=HeldOut.Reason.DISABLED)  # the owner's own choice
        .values("epoch_id", "contributor_id", "reason", "detail", "gpu__uuid", "gpu__name")
    )
    if not held:
        return 0
    owners = {h["contributor_id"] for h in held}
    told = _told(EventKind.EARNED_NOTHING, owners, ctx)
    by_epoch = {e.pk: e for e in epochs}
    grouped: dict[tuple[int, int], list[dict]] = {}
    # Oldest epoch first, and what one epoch tells is not repeated by a later one in this run.
    for h in sorted(held, key=lambda h: h["epoch_id"]):
        said = (h["contributor_id"], h["gpu__uuid"], h["reason"])
        if said in told:
            continue
        told.add(said)
        grouped.setdefault((h["epoch_id"], h["contributor_id"]), []).append(h)
    prefs = ctx.prefs(owners)
    events = []
    for (epoch_id, owner), items in grouped.items():
        epoch = by_epoch[epoch_id]
        p = prefs[owner]
        label = dict(HeldOut.Reason.choices)
        lines = [
            f"- {h['gpu__name']} ({h['gpu__uuid']}): {label.get(h['reason'], h['reason'])}. "
            f"{h['detail']}"
            for h in items
        ]
        events.append(
            AlertEvent(
                contributor_id=owner,
                kind=EventKind.EARNED_NOTHING,
                key=f"earned_nothing:{epoch_id}",
                title=f"{len(items)} GPU{'s' if len(items) > 1 else ''} earned nothing in the "
                f"epoch that ended {local(epoch.end, p)}",
                body=(
                    "The epoch is settled. These GPUs reported in it but earned nothing, for "
                    "the reason its statement gives:\n\n" + "\n".join(lines) + "\n\nThe same "
                    "GPU and reason are not repeated for "
                    f"{duration(timedelta(seconds=settings.ALERT_REPEAT_S))}.\n\n"
                    f"{_portal('/rewards/')}"
                ),
                data={
                    "epoch_start": epoch.start.isoformat(),
                    "gpus": [{"uuid": h["gpu__uuid"], "reason": h["reason"]} for h in items],
                },
                created_at=ctx.now,
            )
        )
    return _raise(events)


def _verification_failed(ctx: _Context) -> int:
    cursor = _cursor("challenges", ctx.now)
    failed = list(
        Challenge.objects.filter(
            status=Challenge.Status.FAILED,
            decided_at__gt=cursor.at - OVERLAP,
            decided_at__lte=ctx.now,
            gpu__node__owner_id__in=ctx.subscribers,
        ).values(
            "pk", "reason", "detail", "decided_at", "gpu__uuid", "gpu__name", "node__name",
            "gpu__node__owner_id",
        )
    )  # fmt: skip
    last = (
        Challenge.objects.filter(decided_at__gt=cursor.at, decided_at__lte=ctx.now)
        .order_by("-decided_at")
        .values_list("decided_at", flat=True)
        .first()
    )
    if last is not None:
        cursor.at = last
        cursor.save(update_fields=["at"])
    labels = dict(Challenge.Reason.choices)
    retry = duration(timedelta(seconds=settings.GPU_VERIFICATION_RETRY_S))
    events = [
        AlertEvent(
            contributor_id=c["gpu__node__owner_id"],
            kind=EventKind.VERIFICATION_FAILED,
            key=f"challenge:{c['pk']}:failed",
            title=f"{c['gpu__name']} on {c['node__name']} failed its proof-of-GPU challenge",
            body=(
                f"{c['gpu__name']} ({c['gpu__uuid']}) failed: "
                f"{labels.get(c['reason'], c['reason'] or 'failed')}. {c['detail']}\n\n"
                f"It earns nothing until a challenge passes; a new one follows within {retry}. "
                "Run `omnitensor-agent verify` on the machine to see what the GPU does.\n\n"
                + _portal(f"/gpus/{c['gpu__uuid']}/")
            ),
            data={"gpu": c["gpu__uuid"], "reason": c["reason"]},
            created_at=ctx.now,
        )
        for c in failed
    ]
    return _raise(events)


def _claims(ctx: _Context) -> int:
    from rewards.display import omnit
    from rewards.models import Claim

    cursor = _cursor("claims", ctx.now)
    changed = list(
        Claim.objects.filter(contributor_id__in=ctx.subscribers)
        .filter(
            Q(confirmed_at__gt=cursor.at - OVERLAP, confirmed_at__lte=ctx.now)
            | Q(expired_at__gt=cursor.at - OVERLAP, expired_at__lte=ctx.now)
        )
        .values("pk", "contributor_id", "status", "amount_wei", "account", "tx_hash")
    )
    cursor.at = ctx.now
    cursor.save(update_fields=["at"])
    events = []
    for c in changed:
        amount = omnit(c["amount_wei"])
        if c["status"] == Claim.Status.CONFIRMED:
            kind, title = EventKind.CLAIM_CONFIRMED, f"Claim confirmed: {amount} OMNIT"
            body = (
                f"{amount} OMNIT reached {c['account']} (transaction {c['tx_hash']}). "
                "It is yours on-chain."
            )
        elif c["status"] == Claim.Status.EXPIRED:
            kind, title = EventKind.VOUCHER_EXPIRED, f"Voucher expired: {amount} OMNIT"
            body = (
                f"The voucher for {amount} OMNIT to {c['account']} expired before it was "
                "redeemed. Nothing is lost: the amount is claimable again."
            )
        else:
            continue
        events.append(
            AlertEvent(
                contributor_id=c["contributor_id"],
                kind=kind,
                key=f"claim:{c['pk']}:{c['status']}",
                title=title,
                body=body + f"\n\n{_portal('/claims/')}",
                data={"claim": c["pk"], "amount_wei": str(c["amount_wei"])},
                created_at=ctx.now,
            )
        )
    return _raise(events)


# --- the daily digest -----------------------------------------------------------------------


def _digests(ctx: _Context) -> int:
    from rewards.display import omnit
    from rewards.models import EarningDay, Epoch

    cursor = _cursor("digest", ctx.now - timedelta(hours=1))
    if ctx.now - cursor.at < timedelta(minutes=10):
        return 0  # time zones differ by quarter hours at most: a few looks an hour suffice
    cursor.at = ctx.now
    cursor.save(update_fields=["at"])
    wanted = {
        owner
        for owner, kinds in AlertChannel.objects.filter(
            enabled=True, verified_at__isnull=False, unsubscribed_at__isnull=True
        ).values_list("contributor_id", "events")
        if EventKind.DIGEST in (kinds or [])
    }
    prefs = ctx.prefs(wanted)
    due = {}
    for owner in wanted:
        today = ctx.now.astimezone(zoneinfo.ZoneInfo(prefs[owner].time_zone))
        if today.hour >= settings.ALERT_DIGEST_HOUR:
            due[owner] = today.date()
    if not due:
        return 0
    done = set(
        AlertEvent.objects.filter(
            kind=EventKind.DIGEST,
            contributor_id__in=list(due),
            created_at__gte=ctx.now - timedelta(hours=36),
        ).values_list("contributor_id", "key")
    )
    due = {o: d for o, d in due.items() if (o, f"digest:{d.isoformat()}") not in done}
    # The last UTC day all of whose epochs are settled: at 08:00 in UTC+8 yesterday (UTC)
    # closed minutes ago and its last epoch is still in its grace period.
    last_end = (
        Epoch.objects.filter(status=Epoch.Status.SETTLED)
        .order_by("-end")
        .values_list("end", flat=True)
        .first()
    )
    yesterday = (ctx.now.astimezone(UTC) - timedelta(days=1)).date()
    if last_end is not None:
        yesterday = min(yesterday, last_end.astimezone(UTC).date() - timedelta(days=1))
    earned = {
        r.contributor_id: r
        for r in EarningDay.objects.filter(contributor_id__in=list(due), day=yesterday)
    }
    online = dict(
        GPU.objects.filter(node__owner_id__in=list(due), enabled=True, last_seen_at__gte=ctx.cut)
        .values("node__owner_id")
        .annotate(n=Count("pk"))
        .values_list("node__owner_id", "n")
    )
    events = []
    for owner, day in due.items():
        row = earned.get(owner)
        total = row.total_wei if row else 0
        compute, idle = (row.compute_wei, row.idle_wei) if row else (0, 0)
        events.append(
            AlertEvent(
                contributor_id=owner,
                kind=EventKind.DIGEST,
                key=f"digest:{day.isoformat()}",
                title=f"Your GPUs earned {omnit(total)} OMNIT on {yesterday.isoformat()}",
                body=(
                    f"On {yesterday.isoformat()} (UTC) your GPUs earned {omnit(total)} OMNIT: "
                    f"{omnit(compute)} for compute, {omnit(idle)} for idle memory. "
                    f"{online.get(owner, 0)} of your GPUs are online now.\n\n"
                    f"{_portal('/rewards/')}"
                ),
                data={
                    "day": yesterday.isoformat(),
                    "compute_wei": str(compute),
                    "idle_wei": str(idle),
                },
                created_at=ctx.now,
            )
        )
    return _raise(events)
