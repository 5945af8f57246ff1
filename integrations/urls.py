from django.urls import path

from integrations import views

app_name = "integrations"

urlpatterns = [
    path("", views.monitor, name="monitor"),
    path("partners-panel/", views.partners_panel_alone, name="partners-panel"),
    path("messages/<int:pk>/", views.message_detail, name="message-detail"),
    path("messages/<int:pk>/replay/", views.message_replay, name="message-replay"),
    path("messages/<int:pk>/discard/", views.message_discard, name="message-discard"),
    path("messages/replay/", views.messages_replay_bulk, name="messages-replay-bulk"),
    path("partners/<int:pk>/pause/", views.partner_pause, name="partner-pause"),
    path("partners/<int:pk>/resume/", views.partner_resume, name="partner-resume"),
    path("events/", views.event_list, name="event-list"),
    path("events/<int:pk>/", views.event_detail, name="event-detail"),
    path("events/<int:pk>/replay/", views.event_replay, name="event-replay"),
    path("events/<int:pk>/discard/", views.event_discard, name="event-discard"),
    path("requests/", views.request_list, name="request-list"),
    path("requests/<int:pk>/", views.request_detail, name="request-detail"),
]
