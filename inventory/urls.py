from django.urls import path

from inventory import views

app_name = "inventory"

urlpatterns = [
    path("stock/", views.stock_list, name="stock-list"),
    path("receipts/", views.receipt_list, name="receipt-list"),
    path("receipts/<str:number>/", views.receipt_detail, name="receipt-detail"),
]
