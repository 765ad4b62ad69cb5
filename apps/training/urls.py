from django.urls import path

from apps.training import views

app_name = "training"
urlpatterns = [
    path("training/runs/", views.run_list, name="run_list"),
    path("training/runs/new/", views.run_new, name="run_new"),
    path("training/runs/compare/", views.run_compare, name="run_compare"),
    path("training/runs/<int:run_id>/", views.run_detail, name="run_detail"),
    path("training/runs/<int:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("training/base-models/", views.base_model_list, name="base_model_list"),
    path("training/retraining/", views.retraining, name="retraining"),
    path("training/retraining/<slug:slug>/", views.retrain_policy_edit, name="retrain_policy"),
]
