from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from orchestration import views as orchestration_views
from portal import health, views

urlpatterns = [
    path("", views.home, name="home"),
    path("search/", views.search, name="search"),
    path("healthz", health.healthz, name="healthz"),
    # Pages name their icon; the admin's do not, and browsers then ask for /favicon.ico.
    path("favicon.ico", RedirectView.as_view(url=static("portal/favicon.svg"), permanent=True)),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("inventory/", include("inventory.urls")),
    path("orders/", include("orchestration.urls")),
    path("tasks/", orchestration_views.task_list, name="task-list"),
    path("queues/", include("exceptions.urls")),
    path("integrations/", include("integrations.urls")),
    path("automation/", include("automation.urls")),
    path("api/v1/", include("portal.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

handler400 = "portal.views.bad_request"
handler403 = "portal.views.permission_denied"
handler404 = "portal.views.not_found"
handler500 = "portal.views.server_error"

admin.site.site_header = "Distribution operations portal"
admin.site.site_title = "Operations admin"
admin.site.index_title = "Rules, policies and reference data"
