"""The contributors' API: sign-in under /auth/, the agent API and /me under /api/v1/."""

from django.urls import path

from contributors.api import agent, views

auth_urlpatterns = [
    path("nonce", views.NonceView.as_view(), name="auth-nonce"),
    path("verify", views.VerifyView.as_view(), name="auth-verify"),
    path("logout", views.LogoutView.as_view(), name="auth-logout"),
    path("demo", views.DemoSignInView.as_view(), name="auth-demo"),
]

urlpatterns = [
    path("agent/enroll", agent.EnrollView.as_view(), name="agent-enroll"),
    path("agent/telemetry", agent.TelemetryView.as_view(), name="agent-telemetry"),
    path("agent/config", agent.ConfigView.as_view(), name="agent-config"),
    path("agent/proof/<str:name>", agent.ProofDocView.as_view(), name="agent-proof-doc"),
    path(
        "agent/challenges/<uuid:challenge_id>/commit",
        agent.ChallengeCommitView.as_view(),
        name="agent-challenge-commit",
    ),
    path(
        "agent/challenges/<uuid:challenge_id>/reveal",
        agent.ChallengeRevealView.as_view(),
        name="agent-challenge-reveal",
    ),
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
