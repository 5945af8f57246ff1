from django.urls import path

from exceptions import views

app_name = "exceptions"

urlpatterns = [
    path("", views.queue_list, name="queue-list"),
    path("summary.json", views.queue_summary, name="queue-summary"),
    path("due-next/", views.due_next, name="due-next"),
    path("cases/<int:pk>/", views.case_detail, name="case-detail"),
    path("cases/<int:pk>/claim/", views.case_claim, name="case-claim"),
    path("cases/<int:pk>/assign/", views.case_assign, name="case-assign"),
    path("cases/<int:pk>/route/", views.case_route, name="case-route"),
    path("cases/<int:pk>/resolve/", views.case_resolve, name="case-resolve"),
    path("cases/<int:pk>/comment/", views.case_comment, name="case-comment"),
    path("cases/<int:pk>/<slug:action>/", views.case_transition, name="case-transition"),
    path("<slug:code>/", views.queue_detail, name="queue-detail"),
    path("<slug:code>/rows", views.queue_rows, name="queue-rows"),
    path("<slug:code>/changes", views.queue_changes, name="queue-changes"),
    path("<slug:code>/bulk/", views.queue_bulk, name="queue-bulk"),
]
