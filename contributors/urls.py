"""The contributors' pages: sign-in, wallets, machines and their GPUs, alerts."""

from django.urls import path

from contributors import views
from contributors.alerts import pages as alerts

urlpatterns = [
    path("signin/", views.signin_page, name="signin"),
    path("wallets/", views.wallets_page, name="wallets"),
    path("wallets/profile", views.public_profile, name="public-profile"),
    path("nodes/", views.nodes_page, name="nodes"),
    path("nodes/enrollment-code", views.create_enrollment_code, name="enroll-code"),
    path("nodes/<int:node_id>/revoke", views.revoke_node, name="node-revoke"),
    path("nodes/<int:node_id>/rotate", views.rotate_node_token, name="node-rotate"),
    path("gpus/<path:uuid>/settings", views.gpu_settings, name="gpu-settings"),
    path("gpus/<path:uuid>/", views.gpu_page, name="gpu"),
    path("alerts/", alerts.alerts_page, name="alerts"),
    path("alerts/channels", alerts.add_channel, name="alerts-add"),
    path("alerts/channels/<int:pk>/settings", alerts.channel_settings, name="alerts-channel"),
    path("alerts/channels/<int:pk>/test", alerts.test_channel, name="alerts-test"),
    path("alerts/channels/<int:pk>/secret", alerts.rotate_secret, name="alerts-secret"),
    path("alerts/channels/<int:pk>/delete", alerts.delete_channel, name="alerts-delete"),
    path("alerts/preferences", alerts.save_preferences, name="alerts-preferences"),
    path("alerts/unsubscribe/<str:token>/", alerts.unsubscribe, name="alerts-unsubscribe"),
    path("alerts/verify/<str:token>/", alerts.verify, name="alerts-verify"),
]
