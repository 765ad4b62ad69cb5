from django.urls import path

from apps.deployments import views, views_errors, views_shadow

app_name = "deployments"
urlpatterns = [
    path("deployments/", views.home, name="home"),
    path("deployments/<slug:slug>/", views.dataset_page, name="dataset"),
    path("deployments/<slug:slug>/rollback/", views.confirm_rollback, name="confirm_rollback"),
    path("deployments/<slug:slug>/canary/end/", views.confirm_canary_end, name="confirm_canary_end"),
    path("deployments/<slug:slug>/shadow/end/", views_shadow.confirm_shadow_end, name="confirm_shadow_end"),
    path("models/<int:model_id>/shadow/", views_shadow.confirm_shadow_start, name="confirm_shadow_start"),
    path("models/", views.model_list, name="model_list"),
    path("models/<int:model_id>/promote/", views.confirm_promote, name="confirm_promote"),
    path("models/<int:model_id>/", views_errors.model_errors, name="model_detail"),
    path("models/<int:model_id>/errors/", views_errors.model_errors, name="model_errors"),
]
