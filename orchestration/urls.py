app_name = "orchestration"

urlpatterns: list = []
