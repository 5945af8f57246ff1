from django.urls import path

from integrations import views

app_name = "integrations"

urlpatterns = [
    path("", views.monitor, name="monitor"),
    path("messages/<int:pk>/", views.message_detail, name="message-detail"),
    path("messages/<int:pk>/replay/", views.message_replay, name="message-replay"),
    path("messages/<int:pk>/discard/", views.message_discard, name="message-discard"),
    path("messages/replay/", views.messages_replay_bulk, name="messages-replay-bulk"),
    path("requests/", views.request_list, name="request-list"),
    path("requests/<int:pk>/", views.request_detail, name="request-detail"),
]
