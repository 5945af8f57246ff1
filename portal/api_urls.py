"""The versioned partner API: each app contributes its routes under /api/v1/."""

from django.urls import include, path

urlpatterns = [
    path("", include("inventory.api.urls")),
    path("", include("orchestration.api.urls")),
    path("", include("exceptions.api.urls")),
    path("", include("integrations.api.urls")),
    path("", include("automation.api.urls")),
]
