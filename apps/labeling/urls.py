"""Labeling pages."""

from django.urls import path

from apps.labeling import views

app_name = "labeling"
urlpatterns = [
    path("label/", views.home, name="home"),
    path("label/<slug:slug>/", views.label, name="label"),
    path("review/", views.review_home, name="review_home"),
    path("review/<slug:slug>/", views.review, name="review"),
    path("review/<slug:slug>/suspects/", views.suspects, name="suspects"),
    path("labeling/stats/", views.stats, name="stats"),
]
