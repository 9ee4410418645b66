"""Thin API views: datasets, identities, images, faces, and the ingestion endpoints (202 + job URL)."""
from __future__ import annotations

from dataclasses import asdict

from django.db import IntegrityError, transaction
from django.db.models import Count
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from facecurate.accounts.permissions import IsStaffRole
from facecurate.jobs.models import Job
from facecurate.rest import BoundedJSONParser, IdCursorPagination

from . import tasks
from .models import Dataset, Face, Identity, Image
from .serializers import (
    DatasetBusySerializer,
    DatasetSerializer,
    FaceSerializer,
    IdentitySerializer,
    ImageSerializer,
    ImportRequestSerializer,
    IngestResponseSerializer,
    ManifestRequestSerializer,
    NothingAcceptedSerializer,
    UploadRequestSerializer,
    dataset_name_taken,
)
from .services import ingest
from .services.busy import DatasetBusy, check_ingestion_allowed
from .services.counts import attach_counts


def _busy(exc: DatasetBusy) -> Response:
    return Response({"detail": str(exc), "code": exc.code}, status=exc.status)


def _start_job(request, dataset: Dataset, kind: str, params: dict) -> Job:
    check_ingestion_allowed(dataset)
    job = Job.objects.create(kind=kind, dataset=dataset, params=params, created_by=request.user)
    _record_provenance(dataset, job, params.get("path") or f"manifest of {len(params.get('entries', []))} files")
    job.enqueue(tasks.ingest_job)
    return job


def _record_provenance(dataset: Dataset, job: Job, source: str) -> None:
    """Append this ingestion to the dataset's provenance (kept short: the last 100 ingestions)."""
    dataset.refresh_from_db(fields=["provenance"])
    prov = dict(dataset.provenance or {})
    history = list(prov.get("ingestions", []))[-99:]
    history.append({"job": str(job.id), "kind": job.kind, "source": source, "by": job.created_by.username
                    if job.created_by else None, "at": job.created_at.isoformat()})
    prov["ingestions"] = history
    dataset.provenance = prov
    dataset.save(update_fields=["provenance", "updated_at"])


def _accepted(request, job: Job, *, accepted: list[dict], rejected: list[ingest.Rejected]) -> Response:
    body = {
        "job": str(job.id),
        "job_url": request.build_absolute_uri(reverse("job-detail", kwargs={"pk": job.id})),
        "queued": len(accepted),
        "accepted": accepted,
        "rejected": [asdict(r) for r in rejected],
    }
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["job_url"]})


def _nothing_accepted(rejected: list[ingest.Rejected]) -> Response:
    """One rule for every ingestion: when no file is accepted, 400 with the refusals and no job."""
    return Response(
        {"detail": f"nothing to ingest: all {len(rejected)} file(s) were refused" if rejected
         else "nothing to ingest: no files found",
         "code": "nothing_accepted", "accepted": [], "rejected": [asdict(r) for r in rejected]},
        status=status.HTTP_400_BAD_REQUEST,
    )


def _handed_over(entries: list[dict]) -> list[dict]:
    """Accepted entries of an import or manifest: the worker stores them, so no face id yet."""
    return [{"name": e["path"], "image_id": None, "identity": e.get("identity")} for e in entries]


class DatasetViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Face datasets. Reading needs the annotator role; creating, changing and ingesting need staff."""

    serializer_class = DatasetSerializer

    def get_queryset(self):
        return Dataset.objects.select_related("created_by").order_by("name")

    def list(self, request, *args, **kwargs):
        """Datasets with their counts: three grouped queries per page, whatever the number of faces."""
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        data = self.get_serializer(attach_counts(page), many=True).data
        return self.get_paginated_response(data)

    def perform_create(self, serializer):
        self._save(serializer, created_by=self.request.user)

    def perform_update(self, serializer):
        self._save(serializer)

    @staticmethod
    def _save(serializer, **extra):
        try:
            with transaction.atomic():
                serializer.save(**extra)
        except IntegrityError:  # the same name (ignoring case) saved at the same moment
            raise dataset_name_taken(serializer.validated_data.get("name", "")) from None

    @extend_schema(
        request={"multipart/form-data": UploadRequestSerializer},
        responses={202: IngestResponseSerializer, 400: NothingAcceptedSerializer, 409: DatasetBusySerializer},
        summary="Upload images or zip archives",
    )
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser, FormParser],
            permission_classes=[IsStaffRole])
    def upload(self, request, pk=None):
        """Store the uploaded files as pending faces and queue the detection job.

        Each file is checked (empty, not an image, too many pixels, duplicate, unsafe zip path);
        refused files are listed with a reason and the others are kept. When none is kept: 400 and no job.
        """
        dataset = self.get_object()
        files = request.FILES.getlist("files")
        if not files:
            raise ValidationError({"files": "send one or more files in the 'files' field"})
        identity = request.data.get("identity") or None
        try:
            with transaction.atomic():  # short: the dataset row is locked only to check and make the job
                check_ingestion_allowed(dataset)
                job = Job.objects.create(  # "receiving" until its files are stored (see sweep_interrupted_uploads)
                    kind=Job.Kind.INGEST_UPLOAD, dataset=dataset, created_by=request.user,
                    params={"files": [f.name for f in files][:1000], "identity": identity, "receiving": True},
                )
        except DatasetBusy as exc:
            return _busy(exc)
        # The files are stored outside any transaction (each image row commits on its own), so a long
        # upload never holds the database's write lock (SQLite) or the dataset row (PostgreSQL).
        try:
            report = ingest.accept_uploads(dataset, job, files, identity=identity)
        except BaseException:
            Image.objects.filter(job=job).delete()
            job.delete()
            raise
        if not report.accepted:
            job.delete()
            return _nothing_accepted(report.rejected)
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job.pk)
            if job.state != Job.State.QUEUED:  # the sweeper took it for an interrupted upload meanwhile
                return Response({"detail": f"storing the files took too long and job {job.pk} was {job.state}; "
                                           "its stored files stay with it: re-run the job to detect them",
                                 "code": "upload_interrupted"}, status=status.HTTP_409_CONFLICT)
            job.params = {**job.params, "receiving": False}
            job.result = {"accepted": len(report.accepted), "rejected": [asdict(r) for r in report.rejected]}
            job.progress_total = len(report.accepted)
            job.save()
            _record_provenance(dataset, job, f"upload of {len(files)} files")
            job.enqueue(tasks.ingest_job)
        return _accepted(request, job, accepted=[asdict(a) for a in report.accepted], rejected=report.rejected)

    @extend_schema(request=ImportRequestSerializer,
                   responses={202: IngestResponseSerializer, 400: NothingAcceptedSerializer,
                              409: DatasetBusySerializer},
                   summary="Import a folder from the server's import root")
    @action(detail=True, methods=["post"], url_path="import", permission_classes=[IsStaffRole])
    def import_folder(self, request, pk=None):
        """Import every image under a folder of FACECURATE_IMPORT_ROOT (folder per identity for labeled sets).

        The answer lists the folder's files as this request finds them (by name: accepted, or refused
        with a reason); the worker lists the folder again when it runs, reads and checks each file, and
        the job's ``result`` holds the final accepted count and refusals.
        """
        dataset = self.get_object()
        data = ImportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        path = data.validated_data["path"]
        try:
            ok, rejected = ingest.list_import(dataset, path)
        except ingest.IngestError as exc:
            raise ValidationError({"path": [exc.message], "code": exc.code}) from None
        if not ok:
            return _nothing_accepted(rejected)
        try:
            with transaction.atomic():
                job = _start_job(request, dataset, Job.Kind.INGEST_IMPORT, {"path": path})
        except DatasetBusy as exc:
            return _busy(exc)
        return _accepted(request, job, accepted=_handed_over(ok), rejected=rejected)

    @extend_schema(
        request={"application/json": ManifestRequestSerializer, "multipart/form-data": ManifestRequestSerializer},
        responses={202: IngestResponseSerializer, 400: NothingAcceptedSerializer, 409: DatasetBusySerializer},
        summary="Import files listed in a CSV or JSON manifest",
    )
    @action(detail=True, methods=["post"], parser_classes=[BoundedJSONParser, MultiPartParser, FormParser],
            permission_classes=[IsStaffRole])
    def manifest(self, request, pk=None):
        """Import the files a manifest lists (paths relative to FACECURATE_IMPORT_ROOT, optional identity)."""
        dataset = self.get_object()
        upload = request.FILES.get("manifest")
        try:
            if upload is not None:
                fmt = "json" if upload.name.lower().endswith(".json") else None
                if upload.size > 50 * 1024 * 1024:
                    raise ValueError("manifest file is larger than 50 MB")
                entries = ingest.parse_manifest(upload.read(), fmt=fmt)
            elif isinstance(request.data, dict) and "entries" in request.data:
                entries = ingest.parse_manifest(request.data["entries"])
            elif isinstance(request.data, list):
                entries = ingest.parse_manifest(request.data)
            else:
                raise ValueError("send a 'manifest' file (CSV or JSON) or a JSON body with 'entries'")
        except ValueError as exc:
            raise ValidationError({"manifest": str(exc)}) from None
        ok, rejected = ingest.check_manifest(dataset, entries)
        if not ok:
            return _nothing_accepted(rejected)
        try:
            with transaction.atomic():
                job = _start_job(request, dataset, Job.Kind.INGEST_MANIFEST, {"entries": ok})
                job.result = {"rejected": [asdict(r) for r in rejected]}
                job.save(update_fields=["result"])
        except DatasetBusy as exc:
            return _busy(exc)
        return _accepted(request, job, accepted=_handed_over(ok), rejected=rejected)


class IdentityViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = IdentitySerializer

    def get_queryset(self):
        qs = Identity.objects.order_by("dataset_id", "name")
        dataset = self.request.query_params.get("dataset")
        if dataset:
            qs = qs.filter(dataset_id=dataset) if dataset.isdigit() else qs.none()
        return qs

    @staticmethod
    def _with_face_counts(identities: list) -> list:
        counts = dict(Face.objects.filter(identity_id__in=[i.pk for i in identities]).values("identity_id")
                      .order_by().annotate(n=Count("id")).values_list("identity_id", "n"))
        for ident in identities:
            ident.face_count = counts.get(ident.pk, 0)
        return identities

    @extend_schema(parameters=[OpenApiParameter("dataset", int, description="only this dataset's identities")])
    def list(self, request, *args, **kwargs):
        """Identities with their number of labeled faces (one grouped query over the page's identities)."""
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(self._with_face_counts(page), many=True).data)

    def retrieve(self, request, *args, **kwargs):
        return Response(self.get_serializer(self._with_face_counts([self.get_object()])[0]).data)


class ImageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Stored source images with their detection status (a photo may hold several faces)."""

    serializer_class = ImageSerializer
    pagination_class = IdCursorPagination

    def get_queryset(self):
        qs = Image.objects.select_related("identity").order_by("id")
        params = self.request.query_params
        for key, field in (("dataset", "dataset_id"), ("identity", "identity_id")):
            value = params.get(key)
            if value:
                qs = qs.filter(**{field: value}) if value.isdigit() else qs.none()
        if params.get("job"):
            qs = qs.filter(job_id=params["job"]) if _is_uuid(params["job"]) else qs.none()
        if params.get("status"):
            qs = qs.filter(status=params["status"])
        return qs

    @extend_schema(parameters=[
        OpenApiParameter("dataset", int), OpenApiParameter("identity", int),
        OpenApiParameter("job", str), OpenApiParameter("status", str, enum=Image.Status.values),
    ])
    def list(self, request, *args, **kwargs):
        """Images by id, keyset pages (``next``); each with its number of faces (one grouped query a page)."""
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        counts = dict(Face.objects.filter(image_id__in=[im.pk for im in page]).values("image_id").order_by()
                      .annotate(n=Count("id")).values_list("image_id", "n"))
        for im in page:
            im.face_count = counts.get(im.pk, 0)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, *args, **kwargs):
        image = self.get_object()
        image.face_count = image.faces.count()
        return Response(self.get_serializer(image).data)


class FaceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Detected faces: box and landmarks in their image, aligned crop, thumbnail, identity if labeled."""

    serializer_class = FaceSerializer
    pagination_class = IdCursorPagination

    def get_queryset(self):
        qs = Face.objects.select_related("identity", "image").order_by("id")
        params = self.request.query_params
        for key, field in (("dataset", "dataset_id"), ("identity", "identity_id"), ("image", "image_id")):
            value = params.get(key)
            if value:
                qs = qs.filter(**{field: value}) if value.isdigit() else qs.none()
        return qs

    @extend_schema(parameters=[
        OpenApiParameter("dataset", int), OpenApiParameter("identity", int), OpenApiParameter("image", int),
    ])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


__all__ = ["DatasetViewSet", "IdentityViewSet", "ImageViewSet", "FaceViewSet", "serializers"]
