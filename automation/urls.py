from django.urls import path

from automation import views

app_name = "automation"

urlpatterns = [
    path("equipment/", views.equipment_board, name="equipment-board"),
    path("equipment/panel/", views.equipment_panel_alone, name="equipment-panel"),
    path("equipment/fragment/", views.equipment_board_fragment, name="equipment-board-fragment"),
    path("equipment/<slug:code>/", views.equipment_detail, name="equipment-detail"),
    path("equipment/<slug:code>/fragment/", views.equipment_detail_fragment, name="equipment-detail-fragment"),
    path("equipment/<slug:code>/status/", views.equipment_status, name="equipment-status"),
    path("rules/<int:pk>/dry-run/", views.rule_dry_run, name="rule-dry-run"),
    path("recommendations/<int:pk>/<str:decision>/", views.recommendation_decide, name="recommendation-decide"),
]
