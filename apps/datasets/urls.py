from django.urls import path

from apps.datasets import views, views_classes, views_insights

app_name = "datasets"
urlpatterns = [
    path("datasets/", views.dataset_list, name="list"),
    path("datasets/new", views.dataset_new, name="new"),
    path("datasets/images/<int:image_id>/file", views.image_file, name="image_file"),
    path("datasets/images/<int:image_id>/thumb", views.image_thumb, name="image_thumb"),
    path("datasets/<slug:slug>/", views.dataset_detail, name="detail"),
    path("datasets/<slug:slug>/classes", views_classes.dataset_classes_edit, name="classes_edit"),
    path("datasets/<slug:slug>/overview", views_insights.dataset_overview, name="overview"),
    path("datasets/<slug:slug>/image", views_insights.image_detail, name="image_detail"),
    path("datasets/<slug:slug>/versions/freeze", views.version_freeze, name="version_freeze"),
    path("datasets/<slug:slug>/versions/<int:number>/diff", views_insights.version_diff, name="version_diff"),
    path("datasets/<slug:slug>/versions/<int:number>/export.<str:fmt>", views.version_export, name="version_export"),
    path("datasets/<slug:slug>/import", views.dataset_import, name="import"),
    path("datasets/<slug:slug>/imports/<int:job_id>/", views.import_job, name="import_job"),
    path("datasets/<slug:slug>/imports/<int:job_id>/rollback", views.import_rollback, name="import_rollback"),
]
