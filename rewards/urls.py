"""The rewards pages: the statement and its CSV exports, the estimate, claims."""

from django.urls import path

from rewards import views
from rewards.claims_page import claims_page

urlpatterns = [
    path("rewards/", views.rewards_page, name="rewards"),
    path("rewards/export.csv", views.rewards_csv, name="rewards-csv"),
    path("rewards/export-universal.csv", views.tax_csv, name="rewards-tax-csv"),
    path("estimate/", views.estimate_page, name="estimate"),
    path("claims/", claims_page, name="claims"),
]
