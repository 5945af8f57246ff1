from django.urls import path

from exceptions.api import views

urlpatterns = [
    path("queues/", views.QueueListView.as_view(), name="api-queue-list"),
    path("queues/<slug:code>/cases/", views.QueueCasesView.as_view(), name="api-queue-cases"),
    path("queues/<slug:code>/changes/", views.QueueChangesView.as_view(), name="api-queue-changes"),
]
