"""Monitoring in the admin: alerts (acknowledge), drift reports, canary and performance policies, notification rules
and the delivery log; metrics are read-only."""

from django import forms
from django.contrib import admin, messages

from apps.monitoring import services
from apps.monitoring.models import (
    Alert,
    CanaryPolicy,
    DriftReport,
    HourlyMetric,
    Notification,
    NotificationRule,
    PerformancePolicy,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Computed rows: shown, never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "dataset",
        "kind",
        "scope",
        "value",
        "threshold",
        "first_seen",
        "last_seen",
        "acknowledged",
        "resolved_at",
    ]
    list_filter = ["kind", "acknowledged", "dataset"]
    search_fields = ["message", "scope"]
    readonly_fields = [f.name for f in Alert._meta.fields]
    actions = ["acknowledge"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Acknowledge the selected alerts")
    def acknowledge(self, request, queryset):
        count = 0
        for alert in queryset.filter(Alert.OPEN):
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


@admin.register(PerformancePolicy)
class PerformancePolicyAdmin(admin.ModelAdmin):
    list_display = [
        "dataset",
        "enabled",
        "baseline_days",
        "window_minutes",
        "min_frames",
        "max_detection_rate_drop",
        "max_confidence_drop",
        "max_feedback_rate_increase",
    ]


class NotificationRuleForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=NotificationRule.Event.choices, widget=forms.CheckboxSelectMultiple, required=True
    )

    class Meta:
        model = NotificationRule
        fields = ["dataset", "channel", "target", "secret", "events", "enabled"]

    def clean(self):
        data = super().clean()
        channel, target = data.get("channel"), data.get("target") or ""
        if channel == NotificationRule.Channel.WEBHOOK and not target.startswith(("http://", "https://")):
            self.add_error("target", "A webhook needs an http:// or https:// URL.")
        if channel == NotificationRule.Channel.EMAIL:
            validator = forms.EmailField()
            for address in (a.strip() for a in target.split(",")):
                try:
                    validator.clean(address)
                except forms.ValidationError:
                    self.add_error("target", f"{address!r} is not an e-mail address.")
        return data


@admin.register(NotificationRule)
class NotificationRuleAdmin(admin.ModelAdmin):
    """Who gets what, per dataset."""

    form = NotificationRuleForm
    list_display = ["dataset", "channel", "target", "events", "enabled"]
    list_filter = ["dataset", "channel", "enabled"]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """The delivery log: every message, its attempts and the last error."""

    list_display = ["created_at", "event", "subject", "rule", "status", "attempts", "response_status", "delivered_at"]
    list_filter = ["status", "event", "rule__dataset"]
    search_fields = ["subject", "key", "last_error"]
    list_select_related = ["rule"]
