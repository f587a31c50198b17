"""Admin for contributors, wallets, nodes and GPUs: what network admins look at daily."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count

from contributors.models import GPU, Contributor, Node, Wallet


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
    list_display = ("name", "owner", "hostname", "agent_version", "last_seen_at", "revoked_at")
    list_filter = ("revoked_at", "last_seen_at", "created_at")
    search_fields = ("name", "hostname", "owner__username", "token_prefix", "gpus__uuid")
    list_select_related = ("owner",)
    readonly_fields = ("token_prefix", "token_hash", "created_at", "last_seen_at", "revoked_at")
    raw_id_fields = ("owner",)
    inlines = [GPUInline]
    actions = ["revoke_nodes"]

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
    list_filter = ("enabled", "name", "driver_version")
    search_fields = ("uuid", "name", "node__name", "node__owner__username", "pci_bus_id")
    list_select_related = ("node", "node__owner")
    readonly_fields = ("first_seen_at", "last_seen_at")
    raw_id_fields = ("node", "mig_parent")
