"""Runs over the API: start (staff, 202 + job URL), read, cancel; the review queue and clusters."""
from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from facecurate.accounts.permissions import IsStaffRole
from facecurate.datasets.models import Face
from facecurate.datasets.serializers import media_url
from facecurate.jobs.services import JobConflict, cancel_job
from facecurate.recognition.models import RecognizerVersion
from facecurate.recognition.services.versions import promote

from .models import Cluster, PipelineRun
from .serializers import (
    ClusterSerializer,
    RecognizerSerializer,
    RunCreateSerializer,
    RunFaceSerializer,
    RunReportSerializer,
    RunSerializer,
)
from .services import queries
from .services.start import RunRequestError, start_run


def _int_param(request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit():
        raise ValidationError({name: "must be a non-negative integer"})
    return int(value)


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Pipeline runs: embed, separate overlap, cluster, score p-, store. Staff start and cancel them."""

    queryset = PipelineRun.objects.select_related("job", "recognizer", "unlabeled_dataset", "created_by") \
        .prefetch_related("labeled_datasets")

    def get_serializer_class(self):
        return RunReportSerializer if self.action == "retrieve" else RunSerializer

    @extend_schema(request=RunCreateSerializer, responses={202: RunSerializer})
    def create(self, request):
        """Start a run (202 with the run and its job's URL); 400/409 say why a run cannot start."""
        if not IsStaffRole().has_permission(request, self):
            self.permission_denied(request, message=IsStaffRole.message)
        data = RunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        options = {"truth_from_folders": v["truth_from_folders"]}
        if "overlap_confidence" in v:
            options["overlap_confidence"] = v["overlap_confidence"]
        try:
            run = start_run(request.user, v["unlabeled_dataset"], v.get("labeled_datasets", []),
                            recognizer=v.get("recognizer"), method=v["method"], params=v.get("params") or {},
                            options=options)
        except RunRequestError as exc:
            return Response({"detail": str(exc), "code": "run_refused"}, status=exc.status)
        body = RunSerializer(run, context={"request": request}).data
        url = request.build_absolute_uri(reverse("job-detail", kwargs={"pk": run.job_id}))
        return Response({**body, "job_url": url}, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    @extend_schema(request=None, responses={200: RunSerializer, 409: None})
    @action(detail=True, methods=["post"], permission_classes=[IsStaffRole])
    def cancel(self, request, pk=None):
        run = self.get_object()
        try:
            cancel_job(run.job_id, request.user)
        except JobConflict as exc:
            return Response({"detail": str(exc), "code": "conflict"}, status=status.HTTP_409_CONFLICT)
        run.job.refresh_from_db()
        return Response(RunSerializer(run, context={"request": request}).data)

    @extend_schema(parameters=[
        OpenApiParameter("state", str, enum=list(queries.STATES), description="default: pending"),
        OpenApiParameter("min_size", int), OpenApiParameter("max_size", int),
        OpenApiParameter("ordering", str, enum=list(queries.ORDERINGS), description="default: priority"),
        OpenApiParameter("cursor", str), OpenApiParameter("limit", int, description="1..200, default 50"),
    ], responses={200: inline_serializer("ClusterPage", {
        "results": ClusterSerializer(many=True), "next": serializers.CharField(allow_null=True)})})
    @action(detail=True, methods=["get"])
    def clusters(self, request, pk=None):
        """The review queue: the run's clusters, most doubtful first, with keyset pagination (``next``)."""
        run = self.get_object()
        limit = min(max(_int_param(request, "limit") or 50, 1), 200)
        try:
            page, nxt = queries.cluster_page(
                run, state=request.query_params.get("state", "pending"), min_size=_int_param(request, "min_size"),
                max_size=_int_param(request, "max_size"), ordering=request.query_params.get("ordering", "priority"),
                cursor=request.query_params.get("cursor"), limit=limit)
        except queries.BadQuery as exc:
            raise ValidationError({"detail": str(exc)}) from None
        next_url = None
        if nxt:
            q = request.query_params.copy()
            q["cursor"] = nxt
            next_url = request.build_absolute_uri(f"{request.path}?{q.urlencode()}")
        data = ClusterSerializer(page, many=True, context={"request": request}).data
        return Response({"results": data, "next": next_url})


class ClusterViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Cluster.objects.select_related("assigned_identity", "lease_user", "run")
    serializer_class = ClusterSerializer

    @extend_schema(parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
                   responses={200: RunFaceSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def faces(self, request, pk=None):
        """The cluster's faces, most doubtful (highest p-) first, page by page."""
        qs = queries.cluster_faces(self.get_object())
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(RunFaceSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(responses={200: inline_serializer("Suggestions", {
        "merges": serializers.ListField(child=serializers.DictField()),
        "identities": serializers.ListField(child=serializers.DictField())})})
    @action(detail=True, methods=["get"])
    def suggestions(self, request, pk=None):
        """Clusters to merge with (nearest centroids) and labeled identities (by class score)."""
        s = queries.suggestions(self.get_object())
        thumbs = dict(Face.objects.filter(id__in=[f for m in s["merges"] + s["identities"] for f in m["faces"]])
                      .values_list("id", "thumbnail"))
        merges = [{**ClusterSerializer(m["cluster"], context={"request": request}).data,
                   "similarity": m["similarity"], "thumbnails": [media_url(thumbs[f]) for f in m["faces"]]}
                  for m in s["merges"]]
        idents = [{"identity": i["identity"], "name": i["name"], "score": i["score"],
                   "thumbnails": [media_url(thumbs[f]) for f in i["faces"]]} for i in s["identities"]]
        return Response({"merges": merges, "identities": idents})


class RecognizerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Recognizer versions; exactly one is active (new runs use it). Staff promote a version."""

    queryset = RecognizerVersion.objects.all()
    serializer_class = RecognizerSerializer

    @extend_schema(request=None, responses={200: RecognizerSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsStaffRole])
    def promote(self, request, pk=None):
        return Response(RecognizerSerializer(promote(self.get_object())).data)
