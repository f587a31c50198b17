"""The contributors' pages: sign-in, wallets, machines and their GPUs."""

from django.urls import path

from contributors import views

urlpatterns = [
    path("signin/", views.signin_page, name="signin"),
    path("wallets/", views.wallets_page, name="wallets"),
    path("nodes/", views.nodes_page, name="nodes"),
    path("nodes/enrollment-code", views.create_enrollment_code, name="enroll-code"),
    path("nodes/<int:node_id>/revoke", views.revoke_node, name="node-revoke"),
    path("nodes/<int:node_id>/rotate", views.rotate_node_token, name="node-rotate"),
    path("gpus/<path:uuid>/settings", views.gpu_settings, name="gpu-settings"),
    path("gpus/<path:uuid>/", views.gpu_page, name="gpu"),
]
