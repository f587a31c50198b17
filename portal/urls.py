from django.contrib import admin
from django.urls import include, path

from contributors import views as contributor_views
from contributors.api.urls import api_urlpatterns, auth_urlpatterns
from portal import views

admin.site.site_header = "OmniTensor network admin"
admin.site.site_title = "OmniTensor admin"
admin.site.index_title = "Contributors, machines and rewards"

urlpatterns = [
    path("", views.landing, name="landing"),
    path("healthz", views.healthz, name="healthz"),
    path("signin/", contributor_views.signin_page, name="signin"),
    path("wallets/", contributor_views.wallets_page, name="wallets"),
    path("auth/", include(auth_urlpatterns)),
    path("api/v1/", include(api_urlpatterns)),
    path("admin/", admin.site.urls),
]
