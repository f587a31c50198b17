from django.contrib import admin
from django.urls import path

from portal import views

admin.site.site_header = "OmniTensor network admin"
admin.site.site_title = "OmniTensor admin"
admin.site.index_title = "Contributors, machines and rewards"

urlpatterns = [
    path("", views.landing, name="landing"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
