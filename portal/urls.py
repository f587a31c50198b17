from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from contributors import views as contributor_views
from contributors.api.urls import api_urlpatterns, auth_urlpatterns
from portal import openapi, views
from rewards import views as reward_views
from rewards.claims_page import claims_page

# Importing portal.openapi attached the schema descriptions to the API views (/api/schema/).
_ = openapi

admin.site.site_header = "OmniTensor network admin"
admin.site.site_title = "OmniTensor admin"
admin.site.index_title = "Contributors, machines and rewards"

urlpatterns = [
    path("", views.landing, name="landing"),
    path("healthz", views.healthz, name="healthz"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("rewards/", reward_views.rewards_page, name="rewards"),
    path("rewards/export.csv", reward_views.rewards_csv, name="rewards-csv"),
    path("estimate/", reward_views.estimate_page, name="estimate"),
    path("claims/", claims_page, name="claims"),
    path("signin/", contributor_views.signin_page, name="signin"),
    path("wallets/", contributor_views.wallets_page, name="wallets"),
    path("nodes/", contributor_views.nodes_page, name="nodes"),
    path("nodes/enrollment-code", contributor_views.create_enrollment_code, name="enroll-code"),
    path("nodes/<int:node_id>/revoke", contributor_views.revoke_node, name="node-revoke"),
    path("nodes/<int:node_id>/rotate", contributor_views.rotate_node_token, name="node-rotate"),
    path("gpus/<path:uuid>/settings", contributor_views.gpu_settings, name="gpu-settings"),
    path("gpus/<path:uuid>/", contributor_views.gpu_page, name="gpu"),
    path("auth/", include(auth_urlpatterns)),
    path("api/v1/", include(api_urlpatterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
