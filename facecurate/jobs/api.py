"""Jobs over the API: read-only list/detail, plus ``cancel`` for staff."""
from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from facecurate.accounts.permissions import IsStaffRole

from .models import KIND_TASKS, Job
from .serializers import JobSerializer


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
        """Ask a queued or running job to stop; a running worker stops between files."""
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=self.get_object().pk)
            if job.is_terminal:
                return Response({"detail": f"job is {job.state}"}, status=status.HTTP_409_CONFLICT)
            if job.state == Job.State.QUEUED:
                job.transition(Job.State.CANCELLED)
            else:
                job.cancel_requested = True
                job.save(update_fields=["cancel_requested", "updated_at"])
        return Response(JobSerializer(job, context={"request": request}).data)

    @extend_schema(request=None, responses={202: JobSerializer, 409: None})
    @action(detail=True, methods=["post"], permission_classes=[IsStaffRole])
    def rerun(self, request, pk=None):
        """Queue a failed or cancelled job again; it resumes where it stopped (no duplicates)."""
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=self.get_object().pk)
            if not job.can_transition(Job.State.QUEUED) or job.kind not in KIND_TASKS:
                return Response({"detail": f"a {job.state} job cannot be re-run"}, status=status.HTTP_409_CONFLICT)
            job.transition(Job.State.QUEUED)
            job.enqueue()
        return Response(JobSerializer(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)
