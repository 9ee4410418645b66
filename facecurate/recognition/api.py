"""Retrainings over the API (staff start them: 202 + job URL) and recognizer comparisons."""
from __future__ import annotations

from django.db.models import Q
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from facecurate.accounts.permissions import IsStaffRole
from facecurate.jobs.models import Job

from .models import Artifact, RecognizerVersion
from .serializers import PromoteSerializer, RecognizerSerializer, RetrainCreateSerializer, RetrainingSerializer
from .services.retrain import RetrainRequestError, start_retraining
from .services.retrain_eval import compare
from .services.versions import PromotionRefused, active_version, promote

Comparison = inline_serializer("Comparison", {
    "a": serializers.IntegerField(), "b": serializers.IntegerField(), "evaluated_on": serializers.IntegerField(),
    "evaluated_at": serializers.CharField(allow_null=True),
    "rows": serializers.ListField(child=serializers.DictField()), "benchmarks": serializers.DictField()})


class RetrainingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Retraining jobs: labeled faces + pseudo-identities of reviewed runs -> a new recognizer version.
    Cancel and re-run them with /api/jobs/{id}/cancel/ and /rerun/ (a re-run resumes from its checkpoint)."""

    serializer_class = RetrainingSerializer
    queryset = Job.objects.filter(kind=Job.Kind.RETRAIN).select_related("created_by")

    @extend_schema(request=RetrainCreateSerializer, responses={202: RetrainingSerializer})
    def create(self, request):
        """Start a retraining (202 with the job and its URL); 400 says why it cannot start."""
        if not IsStaffRole().has_permission(request, self):
            self.permission_denied(request, message=IsStaffRole.message)
        data = RetrainCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        options = {k: v[k] for k in RetrainCreateSerializer.OPTION_FIELDS if k in v}
        try:
            job = start_retraining(request.user, v.get("parent") or active_version(), v["labeled_datasets"],
                                   v.get("runs", []), options, eval_datasets=v.get("eval_datasets", []))
        except RetrainRequestError as exc:
            return Response({"detail": str(exc), "code": "retrain_refused"}, status=status.HTTP_400_BAD_REQUEST)
        body = RetrainingSerializer(job, context={"request": request}).data
        url = request.build_absolute_uri(reverse("job-detail", kwargs={"pk": job.pk}))
        return Response({**body, "job_url": url}, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": request.build_absolute_uri(
                            reverse("retraining-detail", kwargs={"pk": job.pk}))})

    @extend_schema(responses={200: inline_serializer("RetrainingDetail", {
        "job": RetrainingSerializer(), "version": RecognizerSerializer(allow_null=True),
        "comparison": Comparison})})
    def retrieve(self, request, *args, **kwargs):
        """The job, the version it made (or the unchanged one) and that version beside its parent."""
        job = self.get_object()
        version = RecognizerVersion.objects.filter(pk=(job.result or {}).get("version")).first()
        comparison = None
        if version is not None and version.parent_id is not None:
            comparison = compare(version.parent, version)
        return Response({"job": RetrainingSerializer(job, context={"request": request}).data,
                         "version": RecognizerSerializer(version).data if version else None,
                         "comparison": comparison})


class RecognizerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Recognizer versions; exactly one is active (new runs use it). Staff promote a version; anyone with a
    role compares two versions on the benchmarks one was evaluated on."""

    queryset = RecognizerVersion.objects.all()
    serializer_class = RecognizerSerializer

    @extend_schema(request=PromoteSerializer, responses={200: RecognizerSerializer, 400: None, 409: None})
    @action(detail=True, methods=["post"], permission_classes=[IsStaffRole])
    def promote(self, request, pk=None):
        """Make the version active. A version whose verdict is not_better or unknown answers 409 unless the
        request says ``override: true`` with a ``reason`` (kept in ``promotions``: who, when, why); one still
        being evaluated, or failed, answers 409 always."""
        body = PromoteSerializer(data=request.data or {})
        body.is_valid(raise_exception=True)
        try:
            version = promote(self.get_object(), user=request.user, **body.validated_data)
        except PromotionRefused as exc:
            return Response({"detail": str(exc), "code": exc.code}, status=exc.status)
        return Response(RecognizerSerializer(version).data)

    @extend_schema(parameters=[OpenApiParameter("with", int, description="the other version (default: the parent)")],
                   responses={200: Comparison, 409: None})
    @action(detail=True, methods=["get"])
    def compare(self, request, pk=None):
        version = self.get_object()
        other_id = request.query_params.get("with") or version.parent_id
        if other_id is None or not str(other_id).isdigit():
            raise ValidationError({"with": "give the id of the other version"})
        other = RecognizerVersion.objects.filter(pk=int(other_id)).first()
        if other is None:
            raise ValidationError({"with": f"no version {other_id}"})
        result = compare(other, version)
        if result is None:
            return Response({"detail": "these versions were not evaluated on the same benchmarks (a retraining "
                                       "evaluates a new version with its parent)", "code": "not_compared"},
                            status=status.HTTP_409_CONFLICT)
        return Response(result)

    @extend_schema(parameters=[OpenApiParameter("lineage", int, description="only this version, its ancestors "
                                                                            "and children")])
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        paths = [v.path for v in page if v.kind == RecognizerVersion.Kind.CHECKPOINT and v.path]
        checkpoints = {a.path: a for a in Artifact.objects.filter(path__in=paths)}
        data = self.get_serializer(page, many=True, context={**self.get_serializer_context(),
                                                             "checkpoints": checkpoints}).data
        return self.get_paginated_response(data)

    def get_queryset(self):
        qs = super().get_queryset()
        v = self.request.query_params.get("lineage")
        if v and v.isdigit():
            qs = qs.filter(Q(pk=int(v)) | Q(parent_id=int(v)) | Q(children__pk=int(v))).distinct()
        return qs
