"""Root URLs: pages of each app, the API under /api/v1/, the schema, admin, auth and health."""

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from vectormlops import views

api_v1 = [
    path("", include("apps.datasets.api_urls")),
    path("", include("apps.labeling.api_urls")),
    path("", include("apps.training.api_urls")),
    path("", include("apps.deployments.api_urls")),
    path("", include("apps.monitoring.api_urls")),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    # Browsers ask for /favicon.ico whatever the page says: the static one (the page's <link> names it too).
    path("favicon.ico", RedirectView.as_view(url=static("img/favicon.ico"), permanent=True)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    re_path(r"^api/", views.api_not_found),  # unknown API routes still answer in the error envelope
    path("", include("apps.datasets.urls")),
    path("", include("apps.labeling.urls")),
    path("", include("apps.training.urls")),
    path("", include("apps.deployments.urls")),
    path("", include("apps.monitoring.urls")),
]

# Error pages inside the site's layout, with the navigation and what to do next.
handler403 = "vectormlops.views.permission_denied"
handler404 = "vectormlops.views.page_not_found"
handler500 = "vectormlops.views.server_error"
