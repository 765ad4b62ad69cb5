from django.urls import path

from apps.monitoring import views

app_name = "monitoring"
urlpatterns = [
    path("monitoring/", views.home, name="home"),
    path("monitoring/alerts/<int:alert_id>/", views.alert_detail, name="alert"),
    path("monitoring/alerts/<int:alert_id>/fragment", views.alert_fragment, name="alert_fragment"),
    path("monitoring/alerts/<int:alert_id>/acknowledge", views.alert_acknowledge, name="alert_acknowledge"),
    path("monitoring/<slug:slug>/", views.dataset_detail, name="dataset"),
]
