from django.urls import path

from inventory import views

app_name = "inventory"

urlpatterns = [
    path("stock/", views.stock_list, name="stock-list"),
]
