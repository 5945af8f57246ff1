from django.urls import path

from orchestration import views

app_name = "orchestration"

urlpatterns = [
    path("", views.order_list, name="order-list"),
    path("cutoffs/", views.cutoff_board, name="cutoff-board"),
    path("floor/", views.floor, name="floor"),
    path("shipments/", views.shipment_list, name="shipment-list"),
    path("shipments/<str:number>/ship/", views.shipment_ship, name="shipment-ship"),
    path("customers/", views.customer_list, name="customer-list"),
    path("customers/<slug:code>/", views.customer_detail, name="customer-detail"),
    path("<str:number>/", views.order_detail, name="order-detail"),
    path("<str:number>/<slug:action>/", views.order_action, name="order-action"),
]
