"""The public pages and their JSON: /network/, /leaderboard/, /api/v1/network and
/api/v1/leaderboard."""

from django.urls import path

from rewards.public import api, views

urlpatterns = [
    path("network/", views.network_page, name="network"),
    path("leaderboard/", views.leaderboard_page, name="leaderboard"),
]

api_urlpatterns = [
    path("network", api.NetworkView.as_view(), name="api-network"),
    path("leaderboard", api.LeaderboardView.as_view(), name="api-leaderboard"),
]
