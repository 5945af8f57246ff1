from django.urls import path

from orchestration import views

app_name = "orchestration"

urlpatterns = [
    path("", views.order_list, name="order-list"),
    path("cutoffs/", views.cutoff_board, name="cutoff-board"),
    path("floor/", views.floor, name="floor"),
    path("shipments/", views.shipment_list, name="shipment-list"),
    path("shipments/<str:number>/ship/", views.shipment_ship, name="shipment-ship"),
    path("<str:number>/", views.order_detail, name="order-detail"),
    path("<str:number>/<slug:action>/", views.order_action, name="order-action"),
]
