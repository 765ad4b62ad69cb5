"""Admin of deployments: every action calls a service; promotions and rollbacks open a confirmation page with the
side-by-side comparison and a required reason (apps/deployments/views.py)."""

from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.urls import reverse

from apps.deployments import selectors, services
from apps.deployments.models import (
    DatasetDeployments,
    Deployment,
    EnrollmentKey,
    Evaluation,
    GateDecision,
    PromotionPolicy,
    RegistryModel,
    Robot,
)
from vectormlops.errors import DomainError
from vectormlops.permissions import ML_ENGINEER, has_role


def _single(modeladmin, request, queryset):
    if queryset.count() != 1:
        modeladmin.message_user(request, "Select exactly one row for this action.", messages.WARNING)
        return None
    return queryset.first()


class EngineerAdmin(admin.ModelAdmin):
    """Staff ML engineers use this app's admin without per-model permissions being handed out one by one."""

    def _engineer(self, request) -> bool:
        user = request.user
        return user.is_active and user.is_staff and has_role(user, ML_ENGINEER)

    def has_module_permission(self, request):
        return self._engineer(request) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return self._engineer(request) or super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return self._engineer(request) or super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return self._engineer(request) or super().has_change_permission(request, obj)


class ReadOnlyAdmin(EngineerAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RegistryModel)
class RegistryModelAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "dataset", "number", "status", "created_at")
    list_filter = ("dataset",)
    actions = ["promote_to_production", "start_canary", "start_shadow"]

    def get_queryset(self, request):
        return selectors.models_with_status().defer("metrics")

    @admin.display(description="status")
    def status(self, obj):
        return selectors.lifecycle_status(obj)

    @admin.action(description="Promote to production")
    def promote_to_production(self, request, queryset):
        model = _single(self, request, queryset)
        if model:
            return redirect(reverse("deployments:confirm_promote", args=[model.pk]) + "?channel=production")

    @admin.action(description="Start canary (N%%)")
    def start_canary(self, request, queryset):
        model = _single(self, request, queryset)
        if model:
            return redirect(reverse("deployments:confirm_promote", args=[model.pk]) + "?channel=canary&percent=10")

    @admin.action(description="Run in shadow (N%%)")
    def start_shadow(self, request, queryset):
        model = _single(self, request, queryset)
        if model:
            return redirect(reverse("deployments:confirm_shadow_start", args=[model.pk]) + "?percent=100")


@admin.register(DatasetDeployments)
class DatasetDeploymentsAdmin(ReadOnlyAdmin):
    list_display = ("slug", "production", "canary", "shadow")
    actions = ["roll_back_production", "end_canary", "end_shadow"]

    def _live(self, obj):
        if not hasattr(obj, "_live"):
            obj._live = selectors.live_deployments(obj)
        return obj._live

    def production(self, obj):
        live = self._live(obj)["production"]
        return f"v{live.model.number}" if live else "–"

    def canary(self, obj):
        live = self._live(obj)["canary"]
        return f"v{live.model.number} at {live.canary_percent}%" if live else "–"

    def shadow(self, obj):
        live = selectors.live_deployment(dataset=obj, channel=Deployment.Channel.SHADOW)
        return f"v{live.model.number} on {live.shadow_percent}%" if live else "–"

    @admin.action(description="Roll back production")
    def roll_back_production(self, request, queryset):
        dataset = _single(self, request, queryset)
        if dataset:
            return redirect("deployments:confirm_rollback", slug=dataset.slug)

    @admin.action(description="End canary")
    def end_canary(self, request, queryset):
        dataset = _single(self, request, queryset)
        if dataset:
            return redirect("deployments:confirm_canary_end", slug=dataset.slug)

    @admin.action(description="End shadow")
    def end_shadow(self, request, queryset):
        dataset = _single(self, request, queryset)
        if dataset:
            return redirect("deployments:confirm_shadow_end", slug=dataset.slug)


class RobotAddForm(forms.ModelForm):
    class Meta:
        model = Robot
        fields = ("serial", "name")


@admin.register(Robot)
class RobotAdmin(EngineerAdmin):
    list_display = ("serial", "name", "is_active", "last_seen_at", "running_model", "pinned_model")
    list_filter = ("is_active",)
    search_fields = ("serial", "name")
    actions = ["revoke", "unpin"]
    readonly_fields = ("token_hash", "created_at", "last_seen_at", "running_model", "running_sha256", "is_active")

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = RobotAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("serial", "name")
        return ("serial", "name", "pinned_model", *self.readonly_fields)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("serial", *self.readonly_fields)

    def save_model(self, request, obj, form, change):
        if not change:
            robot, token = services.robot_register(serial=obj.serial, name=obj.name)
            obj.pk = robot.pk
            messages.warning(request, f"Token of {robot.serial} (shown once, copy it now): {token}")
            return
        if "pinned_model" in form.changed_data:
            services.robot_pin(robot=obj, model=form.cleaned_data["pinned_model"], user=request.user)
        if "name" in form.changed_data:
            services.robot_rename(robot=obj, name=obj.name)

    @admin.action(description="Revoke the token")
    def revoke(self, request, queryset):
        for robot in queryset:
            services.robot_revoke(robot=robot, user=request.user)
        self.message_user(request, f"Revoked {queryset.count()} robot(s).")

    @admin.action(description="Unpin (follow the channels again)")
    def unpin(self, request, queryset):
        for robot in queryset:
            services.robot_pin(robot=robot, model=None, user=request.user)
        self.message_user(request, f"Unpinned {queryset.count()} robot(s).")


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "dataset",
        "channel",
        "action",
        "model",
        "canary_percent",
        "shadow_percent",
        "is_live",
        "created_by",
    )
    list_filter = ("dataset", "channel", "action", "is_live")
    list_select_related = ("dataset", "model__dataset", "created_by")


@admin.register(PromotionPolicy)
class PromotionPolicyAdmin(EngineerAdmin):
    list_display = ("dataset", "min_gain", "max_slice_drop", "min_test_images", "min_map50", "auto_promote")


@admin.register(Evaluation)
class EvaluationAdmin(ReadOnlyAdmin):
    list_display = ("model", "test_set_sha256", "image_count", "seconds", "created_at")
    list_select_related = ("model__dataset",)


@admin.register(GateDecision)
class GateDecisionAdmin(ReadOnlyAdmin):
    list_display = ("candidate", "production", "passed", "map_diff", "created_at")
    list_filter = ("passed",)
    list_select_related = ("candidate__dataset", "production__dataset")


class EnrollmentKeyForm(forms.ModelForm):
    key = forms.CharField(
        min_length=services.MIN_ENROLLMENT_KEY_LENGTH,
        help_text="Give this key to the robots' agents; only its hash is stored.",
    )

    class Meta:
        model = EnrollmentKey
        fields = ("note",)


@admin.register(EnrollmentKey)
class EnrollmentKeyAdmin(EngineerAdmin):
    list_display = ("__str__", "is_active", "created_at")
    actions = ["deactivate"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = EnrollmentKeyForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ("key", "note") if obj is None else ("note", "is_active", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("created_at",)

    def save_model(self, request, obj, form, change):
        try:
            if change:
                services.enrollment_key_update(key=obj, note=obj.note, is_active=obj.is_active)
                return
            row = services.enrollment_key_create(key=form.cleaned_data["key"], note=obj.note)
        except DomainError as exc:
            messages.error(request, exc.message)
            return
        obj.pk = row.pk

    @admin.action(description="Deactivate")
    def deactivate(self, request, queryset):
        services.enrollment_keys_deactivate(keys=list(queryset))
