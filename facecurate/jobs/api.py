"""Jobs over the API: read-only list/detail, plus ``cancel`` for staff."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from facecurate.accounts.permissions import IsStaffRole

from .models import Job
from .serializers import JobSerializer
from .services import JobConflict, cancel_job, rerun_job


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = JobSerializer
    queryset = Job.objects.select_related("created_by").all()

    def get_queryset(self):
        qs = super().get_queryset()
        dataset = self.request.query_params.get("dataset")
        if dataset:
            if not dataset.isdigit():
                return qs.none()
            qs = qs.filter(dataset_id=int(dataset))
        state = self.request.query_params.get("state")
        if state:
            qs = qs.filter(state=state)
        return qs

    @extend_schema(parameters=[
        OpenApiParameter("dataset", int, description="only this dataset's jobs"),
        OpenApiParameter("state", str, enum=Job.State.values),
    ])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses={200: JobSerializer, 409: None})
    @action(detail=True, methods=["post"], permission_classes=[IsStaffRole])
    def cancel(self, request, pk=None):
        """Stop a queued or running job; a running worker stops at its next unit of work."""
        try:
            job = cancel_job(self.get_object().pk, request.user)
        except JobConflict as exc:
            return Response({"detail": str(exc), "code": "conflict"}, status=status.HTTP_409_CONFLICT)
        return Response(JobSerializer(job, context={"request": request}).data)

    @extend_schema(request=None, responses={202: JobSerializer, 409: None})
    @action(detail=True, methods=["post"], permission_classes=[IsStaffRole])
    def rerun(self, request, pk=None):
        """Queue a failed or cancelled job again; it resumes where it stopped (no duplicates)."""
        try:
            job = rerun_job(self.get_object().pk, request.user)
        except JobConflict as exc:
            return Response({"detail": str(exc), "code": "conflict"}, status=status.HTTP_409_CONFLICT)
        return Response(JobSerializer(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)
