"""Monitoring in the admin: alerts (acknowledge), drift reports, canary policies; metrics are read-only."""

from django.contrib import admin, messages

from apps.monitoring import services
from apps.monitoring.models import Alert, CanaryPolicy, DriftReport, HourlyMetric


class ReadOnlyAdmin(admin.ModelAdmin):
    """Computed rows: shown, never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "kind", "scope", "value", "threshold", "first_seen", "last_seen", "acknowledged"]
    list_filter = ["kind", "acknowledged", "dataset"]
    search_fields = ["message", "scope"]
    readonly_fields = [f.name for f in Alert._meta.fields]
    actions = ["acknowledge"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Acknowledge the selected alerts")
    def acknowledge(self, request, queryset):
        count = 0
        for alert in queryset.filter(acknowledged=False):
            services.alert_acknowledge(alert=alert, user=request.user)
            count += 1
        self.message_user(request, f"{count} alert(s) acknowledged.", messages.SUCCESS)


@admin.register(DriftReport)
class DriftReportAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "dataset",
        "robot",
        "computed_at",
        "reference_size",
        "current_size",
        "drifted",
        "drifted_features",
    ]
    list_filter = ["drifted", "dataset"]
    date_hierarchy = "computed_at"


@admin.register(CanaryPolicy)
class CanaryPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "dataset",
        "enabled",
        "min_frames",
        "max_detection_rate_drop",
        "max_confidence_drop",
        "max_feedback_rate_increase",
    ]


@admin.register(HourlyMetric)
class HourlyMetricAdmin(ReadOnlyAdmin):
    list_display = ["hour", "dataset", "model", "robot", "frames", "frames_with_detection", "feedback_total"]
    list_filter = ["dataset"]
    date_hierarchy = "hour"
    list_select_related = ["dataset", "model__dataset", "robot"]

    def get_queryset(self, request):
        # Histograms are heavy and not shown in the list.
        return super().get_queryset(request).defer("confidence_hist", "latency_hist")
