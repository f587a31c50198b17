"""The rewards API under /api/v1/: the scheduler's job attestations and memory probes,
rewards, balance, claims."""

from django.urls import path

from rewards.api import claims, views

urlpatterns = [
    path("scheduler/jobs", views.SchedulerJobsView.as_view(), name="scheduler-jobs"),
    path("scheduler/probes", views.SchedulerProbesView.as_view(), name="scheduler-probes"),
    path("me/rewards", views.MyRewardsView.as_view(), name="api-my-rewards"),
    path("me/balance", views.MyBalanceView.as_view(), name="api-my-balance"),
    path("claims/config", claims.ClaimsConfigView.as_view(), name="api-claims-config"),
    path("me/claims", claims.MyClaimsView.as_view(), name="api-my-claims"),
    path(
        "me/claims/<int:claim_id>/transaction",
        claims.ClaimTransactionView.as_view(),
        name="api-my-claim-transaction",
    ),
    path(
        "me/claims/<int:claim_id>/relay", claims.ClaimRelayView.as_view(), name="api-my-claim-relay"
    ),
]
