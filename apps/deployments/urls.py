from django.urls import path

from apps.deployments import views

app_name = "deployments"
urlpatterns = [
    path("deployments/", views.home, name="home"),
    path("deployments/<slug:slug>/", views.dataset_page, name="dataset"),
    path("deployments/<slug:slug>/rollback/", views.confirm_rollback, name="confirm_rollback"),
    path("deployments/<slug:slug>/canary/end/", views.confirm_canary_end, name="confirm_canary_end"),
    path("models/", views.model_list, name="model_list"),
    path("models/<int:model_id>/promote/", views.confirm_promote, name="confirm_promote"),
]
