"""The public epochs API: settled epochs with their manifests' digests, and each manifest as
JSON (to verify with `rewards/verify_epoch.py`) or CSV. No sign-in; answers are the stored
manifest (`rewards.manifests`), so a request costs a few queries whatever the epoch's size."""

from django.http import HttpResponse, StreamingHttpResponse
from django.urls import reverse
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.lib.errors import ApiError
from portal.lib.times import rfc3339
from rewards import manifests
from rewards.api import epochs_schema as doc
from rewards.api.entries import EpochCursor, page_limit
from rewards.models import Epoch, EpochManifest

MAX_ID_DIGITS = 18  # beyond any primary key (2^63), and never an integer the database refuses
# A published manifest never changes: caches may keep it.
IMMUTABLE = "public, max-age=31536000, immutable"


class PublicView(APIView):
    """Anyone may read, whatever they send in Accept: the answer has one type."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)


class EpochListView(PublicView):
    """GET /api/v1/epochs?limit=&cursor=: settled epochs, newest first, with their manifests."""

    @doc.EPOCH_LIST
    def get(self, request):
        paginator = EpochCursor()
        paginator.page_size = page_limit(request)
        settled = Epoch.objects.filter(status=Epoch.Status.SETTLED).only("pk", "start", "end")
        page = paginator.paginate_queryset(settled, request, self)
        # Stored digests only: a request never builds a manifest (the task after settlement
        # does); an epoch whose manifest is not published yet says null.
        digests = manifests.stored_digests(epoch.pk for epoch in page)
        return Response(
            {
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "epochs": [
                    {
                        "id": epoch.pk,
                        "start": rfc3339(epoch.start),
                        "end": rfc3339(epoch.end),
                        "sha256": digests.get(epoch.pk),
                        "manifest_json": self.link(request, "api-epoch-manifest-json", epoch),
                        "manifest_csv": self.link(request, "api-epoch-manifest-csv", epoch),
                    }
                    for epoch in page
                ],
            }
        )

    @staticmethod
    def link(request, name: str, epoch: Epoch) -> str:
        return request.build_absolute_uri(reverse(name, args=[epoch.pk]))


def published(epoch_id: str) -> EpochManifest:
    """The stored manifest of the settled epoch `epoch_id` names. A request never builds one:
    an epoch settled but not published yet (the task after settlement publishes it within a
    minute or so) answers 404 `manifest_not_published`."""
    if not (epoch_id.isascii() and epoch_id.isdigit() and len(epoch_id) <= MAX_ID_DIGITS):
        raise ApiError(404, "epoch_not_found", "No settled epoch has this id.")
    manifest = EpochManifest.objects.filter(epoch_id=int(epoch_id)).first()
    if manifest is not None:
        return manifest
    if Epoch.objects.filter(pk=int(epoch_id), status=Epoch.Status.SETTLED).exists():
        raise ApiError(
            404,
            "manifest_not_published",
            "This epoch is settled; its manifest is published shortly after settlement. "
            "Try again in a minute.",
        )
    raise ApiError(404, "epoch_not_found", "No settled epoch has this id.")


class EpochManifestJsonView(PublicView):
    """GET /api/v1/epochs/<id>/manifest.json: the stored bytes, the same on every request."""

    @doc.EPOCH_MANIFEST_JSON
    def get(self, request, epoch_id: str):
        manifest = published(epoch_id)
        response = HttpResponse(manifest.body.encode("ascii"), content_type="application/json")
        response["Cache-Control"] = IMMUTABLE
        response["Content-Disposition"] = (
            f'inline; filename="omnitensor-epoch-{manifest.epoch_id}-manifest.json"'
        )
        return response


class EpochManifestCsvView(PublicView):
    """GET /api/v1/epochs/<id>/manifest.csv: the same manifest as a spreadsheet."""

    @doc.EPOCH_MANIFEST_CSV
    def get(self, request, epoch_id: str):
        manifest = published(epoch_id)
        response = StreamingHttpResponse(
            manifests.csv_chunks(manifest), content_type="text/csv; charset=utf-8"
        )
        response["Cache-Control"] = IMMUTABLE
        response["Content-Disposition"] = (
            f'attachment; filename="omnitensor-epoch-{manifest.epoch_id}-manifest.csv"'
        )
        return response
