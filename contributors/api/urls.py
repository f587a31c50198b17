"""The contributors' API: sign-in under /auth/, the agent API and /me under /api/v1/."""

from django.urls import path

from contributors.api import agent, views

auth_urlpatterns = [
    path("nonce", views.NonceView.as_view(), name="auth-nonce"),
    path("verify", views.VerifyView.as_view(), name="auth-verify"),
    path("logout", views.LogoutView.as_view(), name="auth-logout"),
    path("demo", views.DemoSignInView.as_view(), name="auth-demo"),
]

# The agent API, under /api/v1/agent/: first in the site's URLconf (portal/urls.py), so a
# telemetry report is routed without trying every page's pattern before it.
agent_urlpatterns = [
    path("enroll", agent.EnrollView.as_view(), name="agent-enroll"),
    path("telemetry", agent.TelemetryView.as_view(), name="agent-telemetry"),
    path("config", agent.ConfigView.as_view(), name="agent-config"),
    path("proof/<str:name>", agent.ProofDocView.as_view(), name="agent-proof-doc"),
    path(
        "challenges/<uuid:challenge_id>/commit",
        agent.ChallengeCommitView.as_view(),
        name="agent-challenge-commit",
    ),
    path(
        "challenges/<uuid:challenge_id>/reveal",
        agent.ChallengeRevealView.as_view(),
        name="agent-challenge-reveal",
    ),
]

urlpatterns = [
    path("me", views.MeView.as_view(), name="api-me"),
    path("me/gpus", views.MyGpusView.as_view(), name="api-my-gpus"),
    path("me/gpus/<path:uuid>/series", views.MyGpuSeriesView.as_view(), name="api-gpu-series"),
    path("me/wallets", views.WalletsView.as_view(), name="api-wallets"),
    path("me/wallets/<str:address>", views.WalletView.as_view(), name="api-wallet"),
    path(
        "me/wallets/<str:address>/payout",
        views.PayoutWalletView.as_view(),
        name="api-wallet-payout",
    ),
]
