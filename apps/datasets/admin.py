"""Admin for datasets: an internal tool whose actions call services; list pages defer heavy fields."""

import os

from django import forms
from django.contrib import admin, messages
from django.http import FileResponse
from django.shortcuts import render

from apps.datasets import services
from apps.datasets.formats.writers import EXPORT_FORMATS
from apps.datasets.models import Dataset, DatasetVersion, Image, ImportJob
from vectormlops.errors import DomainError


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "review_required", "created_at")
    search_fields = ("slug", "name")
    readonly_fields = ("created_at",)
    actions = ["freeze_version"]

    @admin.action(description="Freeze a new version of the approved annotations")
    def freeze_version(self, request, queryset):
        for dataset in queryset:
            try:
                version = services.version_freeze(dataset=dataset, user=request.user, note="admin action")
            except DomainError as exc:
                self.message_user(request, f"{dataset.slug}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{dataset.slug}: froze v{version.number} ({version.image_count} images)")


class PinSplitForm(forms.Form):
    split = forms.ChoiceField(choices=Image.Split.choices)


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("id", "dataset", "status", "split", "split_pinned", "source", "robot_serial", "uploaded_at")
    list_filter = ("dataset", "status", "split", "split_pinned", "source")
    search_fields = ("sha256", "robot_serial")
    list_select_related = ("dataset",)
    show_full_result_count = False  # no COUNT(*) over 100k rows per page
    readonly_fields = [f.name for f in Image._meta.fields if f.name not in ("labeling_priority",)]
    actions = ["pin_split"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("meta", "color_histogram")

    def has_add_permission(self, request):
        return False  # images arrive through ingestion only

    @admin.action(description="Pin the split of the selected images")
    def pin_split(self, request, queryset):
        if "apply" in request.POST:
            form = PinSplitForm(request.POST)
            if form.is_valid():
                for image in queryset:
                    services.image_split_pin(image=image, split=form.cleaned_data["split"])
                self.message_user(request, f"Pinned {queryset.count()} images to {form.cleaned_data['split']}.")
                return None
        else:
            form = PinSplitForm()
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "images": queryset,
            "ids": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            "opts": self.model._meta,
        }
        return render(request, "datasets/admin_pin_split.html", context)


def _export_action(fmt: str, title: str):
    """An admin action exporting one selected version in ``fmt`` (one per format the export writers know)."""

    @admin.action(description=f"Export as {title} (zip)")
    def action(modeladmin, request, queryset):
        return modeladmin._export(request, queryset, fmt)

    action.__name__ = f"export_{fmt}"
    return action


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    actions = [_export_action(fmt, title) for fmt, title in EXPORT_FORMATS.items()]
    list_display = ("dataset", "number", "image_count", "manifest_sha256", "created_at", "created_by")
    list_filter = ("dataset",)
    readonly_fields = [f.name for f in DatasetVersion._meta.fields]

    def has_add_permission(self, request):
        return False  # versions are frozen by version_freeze only

    def has_change_permission(self, request, obj=None):
        return False  # frozen

    def _export(self, request, queryset, fmt):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to export.", messages.WARNING)
            return None
        version = queryset.get()
        path = services.version_export_zip(version=version, fmt=fmt)
        handle = open(path, "rb")  # noqa: SIM115 - FileResponse closes it
        os.unlink(path)
        return FileResponse(handle, as_attachment=True, filename=f"{version.dataset.slug}-v{version.number}-{fmt}.zip")


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ("id", "dataset", "original_name", "status", "done", "total", "created_at", "created_by")
    list_filter = ("status", "dataset")
    readonly_fields = [f.name for f in ImportJob._meta.fields]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("report")

    def has_add_permission(self, request):
        return False  # imports start from the dataset page or `manage.py import_dataset`
