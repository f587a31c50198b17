from django.contrib import admin

from rewards.models import Job


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
