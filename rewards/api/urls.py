"""The rewards API under /api/v1/: the scheduler's job attestations and memory probes,
rewards, balance, claims, and the public epochs with their manifests."""

from django.urls import path

from rewards.api import claims, epochs, views

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
    path("epochs", epochs.EpochListView.as_view(), name="api-epochs"),
    # <str:>, not <int:>: any id that is not a settled epoch's is a JSON 404 from the view.
    path(
        "epochs/<str:epoch_id>/manifest.json",
        epochs.EpochManifestJsonView.as_view(),
        name="api-epoch-manifest-json",
    ),
    path(
        "epochs/<str:epoch_id>/manifest.csv",
        epochs.EpochManifestCsvView.as_view(),
        name="api-epoch-manifest-csv",
    ),
]
