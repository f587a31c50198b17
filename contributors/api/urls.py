from django.urls import path

from contributors.api import views

auth_urlpatterns = [
    path("nonce", views.NonceView.as_view(), name="auth-nonce"),
    path("verify", views.VerifyView.as_view(), name="auth-verify"),
    path("logout", views.LogoutView.as_view(), name="auth-logout"),
]

api_urlpatterns = [
    path("me", views.MeView.as_view(), name="api-me"),
    path("me/wallets", views.WalletsView.as_view(), name="api-wallets"),
    path("me/wallets/<str:address>", views.WalletView.as_view(), name="api-wallet"),
    path(
        "me/wallets/<str:address>/payout",
        views.PayoutWalletView.as_view(),
        name="api-wallet-payout",
    ),
]
