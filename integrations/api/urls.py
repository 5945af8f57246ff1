"""Partner API routes under /api/v1/ (the bench-only endpoint exists only with BENCH_ENDPOINTS=1)."""

from django.conf import settings
from django.urls import path

from integrations.api import views

urlpatterns = [
    path("orders", views.OrdersView.as_view(), name="api-orders"),
    path("orders/<str:external_ref>", views.OrderDetailView.as_view(), name="api-order-detail"),
    path("orders/<str:external_ref>/cancel", views.OrderCancelView.as_view(), name="api-order-cancel"),
    path("availability", views.AvailabilityView.as_view(), name="api-availability"),
    path("events", views.EventsView.as_view(), name="api-events"),
    path("events/batch", views.EventBatchView.as_view(), name="api-events-batch"),
]

if getattr(settings, "BENCH_ENDPOINTS", False):
    from integrations.api import bench_views

    urlpatterns += [path("bench/reserve", bench_views.reserve_one, name="api-bench-reserve")]
