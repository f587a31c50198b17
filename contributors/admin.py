"""Admin for contributors, wallets, nodes and GPUs: what network admins look at daily,
proof-of-GPU challenges and exemptions included, and the alerts sent to contributors."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count
from django.utils import timezone

from contributors.models import (
    GPU,
    AlertChannel,
    AlertDelivery,
    AlertEvent,
    Challenge,
    Contributor,
    EnrollmentCode,
    Exemption,
    GpuFlag,
    Node,
    NodeFlag,
    Probe,
    ServiceToken,
    TelemetryBatch,
    Wallet,
)
from contributors.verification import challenges


class WalletInline(admin.TabularInline):
    model = Wallet
    extra = 0
    fields = ("address", "is_payout", "linked_at")
    readonly_fields = ("address", "linked_at")


@admin.register(Contributor)
class ContributorAdmin(UserAdmin):
    list_display = ("username", "payout", "node_count", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_active", "date_joined")
    search_fields = ("username", "email", "display_name", "wallets__address")
    inlines = [WalletInline]
    # Admins moderate what the public leaderboard shows (clear a name, unlist someone).
    fieldsets = (
        *UserAdmin.fieldsets,
        ("Public profile", {"fields": ("display_name", "leaderboard")}),
    )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if {"display_name", "leaderboard"} & set(form.changed_data):
            # The public boards show the change at once, as when the contributor makes it.
            from django.db import transaction

            from rewards.public import store

            transaction.on_commit(store.relabel)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_nodes=Count("nodes", distinct=True))

    @admin.display(description="nodes", ordering="_nodes")
    def node_count(self, obj) -> int:
        return obj._nodes

    @admin.display(description="payout wallet")
    def payout(self, obj) -> str:
        wallet = obj.payout_wallet
        return wallet.address if wallet else "—"


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ("address", "contributor", "is_payout", "linked_at")
    list_filter = ("is_payout", "linked_at")
    search_fields = ("address", "contributor__username")
    list_select_related = ("contributor",)
    readonly_fields = ("linked_at",)
    raw_id_fields = ("contributor",)


class GPUInline(admin.TabularInline):
    model = GPU
    extra = 0
    fk_name = "node"
    fields = ("uuid", "name", "memory_total_mib", "committed_memory_mib", "enabled", "last_seen_at")
    readonly_fields = ("uuid", "name", "memory_total_mib", "last_seen_at")
    show_change_link = True


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_filter = ("revoked_at", "last_seen_at", "created_at")
    search_fields = ("name", "hostname", "owner__username", "token_prefix", "gpus__uuid")
    list_select_related = ("owner",)
    readonly_fields = ("token_prefix", "token_hash", "created_at", "last_seen_at", "revoked_at")
    raw_id_fields = ("owner",)
    inlines = [GPUInline]
    list_display = (
        "name",
        "owner",
        "hostname",
        "agent_version",
        "status_now",
        "last_seen_at",
        "clock_skew_s",
        "revoked_at",
    )
    actions = ["revoke_nodes"]

    @admin.display(description="status")
    def status_now(self, obj) -> str:
        return obj.status()

    @admin.action(description="Revoke the selected nodes' tokens")
    def revoke_nodes(self, request, queryset):
        revoked = 0
        for node in queryset.filter(revoked_at__isnull=True):
            node.revoke()
            revoked += 1
        self.message_user(request, f"Revoked {revoked} node(s).", messages.SUCCESS)


@admin.register(GPU)
class GPUAdmin(admin.ModelAdmin):
    list_display = (
        "uuid",
        "name",
        "node",
        "memory_total_mib",
        "committed_memory_mib",
        "enabled",
        "last_seen_at",
    )
    list_filter = ("enabled", "unrated", "name", "driver_version")
    search_fields = ("uuid", "name", "node__name", "node__owner__username", "pci_bus_id")
    list_select_related = ("node", "node__owner")
    readonly_fields = ("first_seen_at", "last_seen_at", "next_challenge_at")
    raw_id_fields = ("node", "mig_parent")
    actions = ["challenge_now"]

    @admin.action(description="Issue a proof-of-GPU challenge now")
    def challenge_now(self, request, queryset):
        if not challenges.enabled():
            self.message_user(request, "GPU_VERIFICATION is off.", messages.WARNING)
            return
        issued = sum(
            challenges.issue(gpu, Challenge.Trigger.ADMIN, by=request.user) is not None
            for gpu in queryset.filter(mig_parent__isnull=True)
        )
        self.message_user(
            request,
            f"Issued {issued} challenge(s); they reach the agents with their next report. "
            "MIG instances are verified through their physical GPU.",
            messages.SUCCESS,
        )


@admin.register(Challenge)
class ChallengeAdmin(admin.ModelAdmin):
    """Every challenge and its result; read only (the protocol writes them)."""

    list_display = (
        "public_id",
        "gpu",
        "trigger",
        "status",
        "reason",
        "throughput",
        "issued_at",
        "decided_at",
    )
    list_filter = ("status", "reason", "trigger")
    search_fields = ("public_id", "gpu__uuid", "node__name", "node__owner__username")
    list_select_related = ("gpu",)
    date_hierarchy = "issued_at"
    exclude = ("seed",)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Challenge._meta.fields if f.name != "seed"]

    def has_add_permission(self, request):
        return False  # issue from the GPU list: "Issue a proof-of-GPU challenge now"

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="throughput vs expected")
    def throughput(self, obj) -> str:
        if obj.measured_ops_per_s is None:
            return "—"
        tera = challenges.TERA
        return (
            f"{obj.measured_ops_per_s / tera:,.1f} / {obj.expected_ops_per_s / tera:,.0f} TOPS "
            f"({obj.throughput_ratio:.0%})"
        )


class ExemptionForm(forms.ModelForm):
    class Meta:
        model = Exemption
        fields = ("gpu", "reason")

    def clean(self):
        cleaned = super().clean()
        gpu = cleaned.get("gpu")
        others = Exemption.objects.filter(gpu=gpu, revoked_at__isnull=True)
        if self.instance.pk:
            others = others.exclude(pk=self.instance.pk)
        if gpu is not None and others.exists():
            # The one-open-exemption constraint names revoked_at, which the form does not
            # show, so Django's own constraint check skips it.
            raise forms.ValidationError("This GPU is exempt already; revoke that one first.")
        return cleaned


@admin.register(Exemption)
class ExemptionAdmin(admin.ModelAdmin):
    """A GPU that earns without proof-of-GPU challenges, and the admin's reason."""

    list_display = ("gpu", "reason", "granted_by", "granted_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("gpu__uuid", "reason")
    raw_id_fields = ("gpu",)
    form = ExemptionForm
    readonly_fields = ("granted_by", "granted_at", "revoked_at")
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.granted_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected exemptions")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} exemption(s).", messages.SUCCESS)


@admin.register(Probe)
class ProbeAdmin(admin.ModelAdmin):
    list_display = ("gpu", "at", "allocated_mib", "ok", "received_at")
    list_filter = ("ok",)
    search_fields = ("gpu__uuid",)
    list_select_related = ("gpu",)

    def has_add_permission(self, request):
        return False  # the scheduler reports them: POST /api/v1/scheduler/probes

    def has_change_permission(self, request, obj=None):
        return False


class OpenFlagFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "open"), ("cleared", "cleared")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(cleared_at__isnull=True)
        if self.value() == "cleared":
            return queryset.filter(cleared_at__isnull=False)
        return queryset


class ClearableFlagAdmin(admin.ModelAdmin):
    actions = ["clear_flags"]

    @admin.action(description="Clear the selected flags")
    def clear_flags(self, request, queryset):
        cleared = queryset.filter(cleared_at__isnull=True).update(
            cleared_at=timezone.now(), cleared_by=request.user
        )
        self.message_user(request, f"Cleared {cleared} flag(s).", messages.SUCCESS)


@admin.register(GpuFlag)
class GpuFlagAdmin(ClearableFlagAdmin):
    """GPUs held out for an admin to look at; clearing a flag lets the GPU earn again."""

    list_display = ("gpu", "reason", "reported_by", "created_at", "last_seen_at", "cleared_at")
    list_filter = (OpenFlagFilter, "reason", "created_at")
    search_fields = ("gpu__uuid", "gpu__node__name", "reported_by__name", "detail")
    list_select_related = ("gpu", "reported_by")
    readonly_fields = (
        "gpu",
        "reason",
        "reported_by",
        "detail",
        "created_at",
        "last_seen_at",
        "cleared_at",
        "cleared_by",
    )


@admin.register(NodeFlag)
class NodeFlagAdmin(ClearableFlagAdmin):
    """Nodes that reported GPU uuids of other nodes: for review only, they hold nothing out
    (the GPUs' owners keep earning). Clearing marks the report reviewed; a node that keeps
    reporting them gets a new flag."""

    list_display = ("node", "reason", "reports", "created_at", "last_seen_at", "cleared_at")
    list_filter = (OpenFlagFilter, "reason", "created_at")
    search_fields = ("node__name", "node__hostname", "node__owner__username", "detail")
    list_select_related = ("node",)
    readonly_fields = (
        "node",
        "reason",
        "gpu_uuids",
        "reports",
        "detail",
        "created_at",
        "last_seen_at",
        "cleared_at",
        "cleared_by",
    )


@admin.register(TelemetryBatch)
class TelemetryBatchAdmin(admin.ModelAdmin):
    list_display = (
        "batch_id",
        "node",
        "status",
        "sample_count",
        "received_at",
        "processed_at",
        "attempts",
        "clock_skew_s",
    )
    list_filter = ("status", "received_at")
    # Newest first by id, which has an index; received_at alone has none (migration 0012: the
    # drains pay for every index of this table twice per batch), and ids grow with it.
    ordering = ("-id",)
    search_fields = ("batch_id", "node__name", "node__owner__username")
    list_select_related = ("node",)
    readonly_fields = [f.name for f in TelemetryBatch._meta.fields]
    actions = ["requeue_batches"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Process the selected batches again (pending or failed)")
    def requeue_batches(self, request, queryset):
        from contributors.telemetry.dispatch import enqueue_ingest

        ids = list(
            queryset.exclude(status=TelemetryBatch.Status.PROCESSED).values_list("pk", flat=True)
        )
        TelemetryBatch.objects.filter(pk__in=ids).update(
            status=TelemetryBatch.Status.PENDING, attempts=0, error=""
        )
        sent = sum(enqueue_ingest(pk, force=True) for pk in ids)
        self.message_user(request, f"Enqueued {sent} batch(es).", messages.SUCCESS)


@admin.register(EnrollmentCode)
class EnrollmentCodeAdmin(admin.ModelAdmin):
    list_display = ("owner", "created_at", "expires_at", "used_at", "node")
    list_filter = ("created_at", "used_at")
    search_fields = ("owner__username",)
    list_select_related = ("owner", "node")
    readonly_fields = ("owner", "code_hash", "created_at", "expires_at", "used_at", "node")

    def has_add_permission(self, request):
        return False  # codes are shown once to their owner; create them on /nodes/ or by command


@admin.register(ServiceToken)
class ServiceTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "scope", "token_prefix", "created_at", "revoked_at")
    list_filter = ("scope", "revoked_at")
    search_fields = ("name", "token_prefix")
    readonly_fields = ("token_prefix", "token_hash", "created_at")
    actions = ["revoke_tokens"]

    def has_add_permission(self, request):
        return False  # python manage.py create_service_token shows the secret once

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request, queryset):
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)


# --- Alerts -----------------------------------------------------------------------------------


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    list_display = ("contributor", "kind", "display_target", "enabled", "verified_at",
                    "unsubscribed_at", "created_at")  # fmt: skip
    list_filter = ("kind", "enabled")
    search_fields = ("contributor__username", "label")
    list_select_related = ("contributor",)
    # Targets hold tokens (Apprise URLs) and webhook secrets: admins see neither.
    exclude = ("target", "secret")
    readonly_fields = ("contributor", "kind", "display_target", "events", "verified_at",
                       "unsubscribed_at", "created_at")  # fmt: skip

    def has_add_permission(self, request):
        return False  # contributors add their own channels on /alerts/


class DeliveryInline(admin.TabularInline):
    model = AlertDelivery
    extra = 0
    can_delete = False
    fields = ("channel", "status", "attempts", "next_attempt_at", "sent_at", "last_error")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = ("title", "contributor", "kind", "created_at", "damped")
    list_filter = ("kind", "damped", "created_at")
    search_fields = ("contributor__username", "title", "key")
    list_select_related = ("contributor",)
    readonly_fields = [f.name for f in AlertEvent._meta.fields]
    inlines = [DeliveryInline]

    def has_add_permission(self, request):
        return False


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event", "channel_kind", "contributor", "status", "attempts",
                    "next_attempt_at", "sent_at", "last_error")  # fmt: skip
    list_filter = ("status", "channel__kind", "created_at")
    search_fields = ("event__contributor__username", "event__title", "last_error")
    list_select_related = ("event__contributor", "channel")
    readonly_fields = [f.name for f in AlertDelivery._meta.fields]
    actions = ["retry_deliveries"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="channel")
    def channel_kind(self, obj):
        return obj.channel.get_kind_display()

    @admin.display(description="contributor")
    def contributor(self, obj):
        return obj.event.contributor

    @admin.action(description="Send the selected failed deliveries again")
    def retry_deliveries(self, request, queryset):
        from contributors.alerts import delivery

        count = delivery.retry(queryset.values_list("pk", flat=True))
        delivery.sweep()
        self.message_user(request, f"{count} delivery(ies) queued again.", messages.SUCCESS)
