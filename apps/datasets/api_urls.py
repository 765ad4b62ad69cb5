from django.urls import path

from apps.datasets import api

urlpatterns = [
    path("images", api.ImagesApi.as_view(), name="datasets-images"),
    path("datasets", api.DatasetsApi.as_view(), name="datasets-list"),
    path("datasets/<slug:slug>/versions", api.DatasetVersionsApi.as_view(), name="datasets-versions"),
    path("datasets/<slug:slug>/imports", api.DatasetImportsApi.as_view(), name="datasets-imports"),
    path("imports/<int:pk>", api.ImportJobApi.as_view(), name="datasets-import-job"),
    path("imports/<int:pk>/rollback", api.ImportRollbackApi.as_view(), name="datasets-import-rollback"),
]
