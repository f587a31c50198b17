from django.contrib import admin
from django.db import models

from portal.lib.json_bodies import BoundedJSONDecoder
from rewards.models import Epoch, GpuModel, HeldOut, Job, RewardEntry, RewardPolicy
from rewards.wei import omnit


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
