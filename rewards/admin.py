from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import models

from portal.lib.json_bodies import BoundedJSONDecoder
from rewards.models import (
    Claim,
    Epoch,
    GpuModel,
    HeldOut,
    Job,
    Relayer,
    RewardEntry,
    RewardPolicy,
    TokenPrice,
)
from rewards.models.prices import parse_price, price_text
from rewards.wei import omnit

ETH = 10**18


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Jobs the scheduler attested; read-only, as the scheduler is their source."""

    list_display = ("job_id", "gpu", "kind", "started_at", "ended_at", "updated_at")
    list_filter = ("kind", "started_at")
    search_fields = ("job_id", "gpu__uuid", "gpu__node__owner__username")
    list_select_related = ("gpu",)
    readonly_fields = (
        "job_id",
        "gpu",
        "kind",
        "started_at",
        "ended_at",
        "created_at",
        "updated_at",
    )


@admin.register(GpuModel)
class GpuModelAdmin(admin.ModelAdmin):
    """The performance catalog admins keep: rate new models here (the empty pattern is the
    default every unrated model gets)."""

    list_display = ("__str__", "pattern", "weight", "notes", "updated_at")
    list_editable = ("weight",)
    list_display_links = ("__str__",)
    search_fields = ("pattern", "notes")
    # memory_sizes_gib is JSON typed into a form: nested too deep, it is a form error.
    formfield_overrides = {models.JSONField: {"decoder": BoundedJSONDecoder}}


@admin.register(RewardPolicy)
class RewardPolicyAdmin(admin.ModelAdmin):
    """Policies take effect at `effective_from`, never before the end of the last settled epoch."""

    list_display = (
        "effective_from",
        "epoch_length_s",
        "grace_s",
        "max_gap_s",
        "compute_pool",
        "idle_pool",
    )

    @admin.display(description="compute pool (OMNIT)")
    def compute_pool(self, obj):
        return omnit(obj.compute_pool_wei)

    @admin.display(description="idle pool (OMNIT)")
    def idle_pool(self, obj):
        return omnit(obj.idle_pool_wei)

    def get_readonly_fields(self, request, obj=None):
        # A policy that settled epochs is history: it explains their amounts.
        if obj is not None and obj.epochs.exists():
            return [f.name for f in obj._meta.fields]
        return ()

    def has_delete_permission(self, request, obj=None):
        return obj is None or not obj.epochs.exists()


class ReadOnlyAdmin(admin.ModelAdmin):
    """Settlement writes these; nobody edits them (a correction is a new entry)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Epoch)
class EpochAdmin(ReadOnlyAdmin):
    list_display = (
        "start",
        "end",
        "status",
        "gpu_count",
        "held_out_count",
        "compute_paid",
        "idle_paid",
        "unallocated",
        "method",
    )
    list_filter = ("status",)
    date_hierarchy = "start"

    @admin.display(description="compute paid (OMNIT)")
    def compute_paid(self, obj):
        return omnit(obj.compute_paid_wei)

    @admin.display(description="idle paid (OMNIT)")
    def idle_paid(self, obj):
        return omnit(obj.idle_paid_wei)

    @admin.display(description="unallocated (OMNIT)")
    def unallocated(self, obj):
        return omnit(obj.compute_unallocated_wei + obj.idle_unallocated_wei)


@admin.register(RewardEntry)
class RewardEntryAdmin(ReadOnlyAdmin):
    list_display = ("epoch", "gpu", "contributor", "kind", "units", "amount")
    list_filter = ("kind",)
    search_fields = ("gpu__uuid", "contributor__username")
    list_select_related = ("epoch", "gpu", "contributor")

    @admin.display(description="amount (OMNIT)")
    def amount(self, obj):
        return omnit(obj.amount_wei)


@admin.register(HeldOut)
class HeldOutAdmin(ReadOnlyAdmin):
    list_display = ("epoch", "gpu", "contributor", "reason", "covered_seconds")
    list_filter = ("reason",)
    search_fields = ("gpu__uuid", "contributor__username")
    list_select_related = ("epoch", "gpu", "contributor")


def relayer_summary() -> tuple[int, str] | None:
    """(message level, text) about the gasless-claim relayer: address and ETH balance."""
    from portal.health import relayer_status

    status = relayer_status()  # at most 2 s: the page must not hang on a node that is down
    if status is None:
        return (
            messages.INFO,
            "No claim relayer is configured (CLAIM_RELAYER_KEY): no gasless claims.",
        )
    if "address" not in status:
        return messages.WARNING, f"Claim relayer: {status.get('error', 'unknown')}."
    if status.get("balance_wei") is None:
        return messages.WARNING, (
            f"Claim relayer {status['address']} on chain {status['chain_id']}: balance unknown "
            f"({status.get('error', 'no node')})."
        )
    balance = int(status["balance_wei"])
    return (messages.INFO if balance else messages.WARNING), (
        f"Claim relayer {status['address']} on chain {status['chain_id']}: "
        f"{balance / ETH:.6f} ETH ({balance} wei) for gas. Top it up before it runs dry: "
        "relays are then refused with relayer_underfunded."
    )


class RelayerSummaryMixin:
    def changelist_view(self, request, extra_context=None):
        summary = relayer_summary()
        if summary is not None:
            self.message_user(request, summary[1], level=summary[0])
        return super().changelist_view(request, extra_context)


@admin.register(Claim)
class ClaimAdmin(RelayerSummaryMixin, ReadOnlyAdmin):
    """Vouchers and what became of them; the watcher and the relayer write them. The list says
    the relayer's address and balance on top."""

    list_display = ("pk", "contributor", "account", "amount", "status", "relayed", "tx_hash",
                    "created_at")  # fmt: skip
    list_filter = ("status", ("relayed_at", admin.EmptyFieldListFilter))
    search_fields = ("account", "tx_hash", "contributor__username")
    list_select_related = ("contributor",)

    @admin.display(description="amount (OMNIT)")
    def amount(self, obj):
        return omnit(obj.amount_wei)

    @admin.display(description="relayed", boolean=True)
    def relayed(self, obj):
        return obj.relayed_at is not None


@admin.register(Relayer)
class RelayerAdmin(RelayerSummaryMixin, ReadOnlyAdmin):
    """The relayer accounts that sent claims: their last nonce and transaction."""

    list_display = ("address", "chain_id", "sent", "last_nonce", "last_tx_hash", "updated_at")


class TokenPriceForm(forms.ModelForm):
    """A quote typed by an admin: the price as exact decimal text, the currency as a code."""

    class Meta:
        model = TokenPrice
        fields = ("currency", "at", "price", "notes")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance.pk:
            self.fields["currency"].initial = settings.PRICE_CURRENCY

    def clean_currency(self):
        return (self.cleaned_data.get("currency") or "").strip().upper()

    def clean_price(self):
        return price_text(parse_price(self.cleaned_data.get("price") or ""))


@admin.register(TokenPrice)
class TokenPriceAdmin(admin.ModelAdmin):
    """The price table exports value OMNIT with (README "Tax-ready exports"): admins add and
    correct quotes by hand; quotes read from the price feed are shown, not edited (delete one
    that is wrong, and add a quote of your own)."""

    form = TokenPriceForm
    list_display = ("at", "currency", "price", "source", "round_id", "notes")
    list_filter = ("currency", "source")
    search_fields = ("price", "notes", "round_id")
    date_hierarchy = "at"
    readonly_fields = ("source", "feed", "round_id", "created_at")

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.source == TokenPrice.Source.FEED:
            return False
        return super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        obj.source = TokenPrice.Source.ADMIN
        super().save_model(request, obj, form, change)
