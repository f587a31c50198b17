"""Admin for contributors, wallets, nodes and GPUs: what network admins look at daily."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count
from django.utils import timezone

from contributors.models import (
    GPU,
    Contributor,
    EnrollmentCode,
    GpuFlag,
    Node,
    NodeFlag,
    ServiceToken,
    TelemetryBatch,
    Wallet,
)


class WalletInline(admin.TabularInline):
    model = Wallet
    extra = 0
    fields = ("address", "is_payout", "linked_at")
    readonly_fields = ("address", "linked_at")


@admin.register(Contributor)
class ContributorAdmin(UserAdmin):
    list_display = ("username", "payout", "node_count", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_active", "date_joined")
    search_fields = ("username", "email", "wallets__address")
    inlines = [WalletInline]

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
    readonly_fields = ("first_seen_at", "last_seen_at")
    raw_id_fields = ("node", "mig_parent")


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
