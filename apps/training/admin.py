"""Admin for training: runs (start, cancel), models and artifacts (read-only), retraining policies."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from apps.datasets.models import Dataset
from apps.training import services
from apps.training.forms import TrainingRunForm
from apps.training.models import EpochMetric, ModelArtifact, ModelVersion, RetrainPolicy, TrainingRun
from apps.training.views import start_run_from_form
from vectormlops.errors import DomainError


class EpochMetricInline(admin.TabularInline):
    model = EpochMetric
    extra = 0
    can_delete = False
    fields = ["epoch", "losses", "precision", "recall", "map50", "map50_95", "seconds"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "dataset_version", "base", "status", "cancel_requested", "trigger", "epochs",
                    "attempts", "queued_at", "finished_at"]  # fmt: skip
    list_filter = ["status", "trigger", "dataset"]
    list_select_related = ["dataset", "dataset_version"]
    search_fields = ["id", "dataset__slug", "base", "error"]
    actions = ["cancel_runs"]
    inlines = [EpochMetricInline]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("log_tail", "package_versions", "final_metrics")

    def get_readonly_fields(self, request, obj=None):
        # Runs change only through services: the row is a record, not a form.
        return [field.name for field in self.model._meta.fields]

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request, queryset):
        done = 0
        for run in queryset:
            try:
                services.training_run_cancel(run=run, user=request.user)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"Run {run.pk}: {exc.message}", messages.WARNING)
        if done:
            self.message_user(request, f"Cancel requested for {done} run(s).", messages.SUCCESS)

    def add_view(self, request, form_url="", extra_context=None):
        """ "Add" starts a run through the service (freezing a version when none is picked) instead of a raw insert."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        dataset = Dataset.objects.filter(slug=request.GET.get("dataset", "")).first()
        form = TrainingRunForm(request.POST or None, initial={"dataset": dataset}, dataset=dataset)
        if request.method == "POST" and form.is_valid():
            run = start_run_from_form(form, user=request.user, trigger=TrainingRun.Trigger.ADMIN)
            if run is not None:
                self.message_user(request, f"Run {run.pk} queued.", messages.SUCCESS)
                return redirect("admin:training_trainingrun_change", run.pk)
        context = {
            **self.admin_site.each_context(request),
            **(extra_context or {}),
            "title": "Start a training run",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/training/trainingrun/start.html", context)


class ModelArtifactInline(admin.TabularInline):
    model = ModelArtifact
    extra = 0
    can_delete = False
    fields = ["format", "storage_path", "size", "sha256"]
    readonly_fields = fields


class _ReadOnly:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ["id", "dataset", "number", "run", "imgsz", "conf_threshold", "created_at"]
    list_filter = ["dataset"]
    list_select_related = ["dataset", "run"]
    inlines = [ModelArtifactInline]


@admin.register(ModelArtifact)
class ModelArtifactAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ["id", "model", "format", "size", "sha256", "storage_path"]
    list_filter = ["format"]
    list_select_related = ["model", "model__dataset"]


@admin.register(RetrainPolicy)
class RetrainPolicyAdmin(admin.ModelAdmin):
    list_display = ["dataset", "enabled", "min_new_approved_images", "max_model_age_days", "epochs", "imgsz",
                    "batch", "base", "due_now"]  # fmt: skip
    list_filter = ["enabled"]
    list_select_related = ["dataset"]

    @admin.display(description="Due now")
    def due_now(self, policy):
        reasons = services.retrain_reasons(policy=policy)
        return "; ".join(reasons) if reasons else "no"
