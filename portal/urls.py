from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from contributors.api.urls import agent_urlpatterns, auth_urlpatterns
from portal import views
from rewards.public.urls import api_urlpatterns as public_api_urlpatterns

admin.site.site_header = "OmniTensor network admin"
admin.site.site_title = "OmniTensor admin"
admin.site.index_title = "Contributors, machines and rewards"

urlpatterns = [
    path("api/v1/agent/", include(agent_urlpatterns)),
    path("", views.landing, name="landing"),
    path("healthz", views.healthz, name="healthz"),
    # Prometheus (portal/metrics.py); 404 unless METRICS_TOKEN is set.
    path("metrics", views.prometheus_metrics, name="metrics"),
    path("dashboard/", views.dashboard, name="dashboard"),
    # The node agent's wheel and install script (portal/agent_views.py).
    path("agent/", include("portal.agent_views")),
    path("", include("rewards.urls")),
    # The public figures: /network/, /leaderboard/ and their JSON (rewards/public/).
    path("", include("rewards.public.urls")),
    path("", include("contributors.urls")),
    path("auth/", include(auth_urlpatterns)),
    path("api/v1/", include("contributors.api.urls")),
    path("api/v1/", include("rewards.api.urls")),
    path("api/v1/", include(public_api_urlpatterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
