"""Browser pages (templates in frontend/templates), protected media files, and the health check."""
from __future__ import annotations

import mimetypes

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import FileResponse, Http404, HttpResponseForbidden, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from facecurate.accounts.roles import is_annotator, is_staff_role, role_of
from facecurate.datasets.models import Dataset
from facecurate.datasets.services.storage import media_path


@require_GET
@never_cache
def healthz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # report, don't crash: the orchestrator reads the status code
        return JsonResponse({"status": "error", "detail": f"database: {type(exc).__name__}"}, status=503)
    return JsonResponse({"status": "ok"})


def _role_context(request) -> dict:
    return {"role": role_of(request.user), "can_ingest": is_staff_role(request.user)}


@login_required
def dataset_list(request):
    if not is_annotator(request.user):
        return render(request, "facecurate/no_role.html", status=403)
    return render(request, "facecurate/datasets.html", _role_context(request))


@login_required
def dataset_detail(request, pk: int):
    if not is_annotator(request.user):
        return render(request, "facecurate/no_role.html", status=403)
    dataset = get_object_or_404(Dataset, pk=pk)
    return render(request, "facecurate/dataset.html", {"dataset": dataset, **_role_context(request)})


@require_GET
def media(request, path: str):
    """Media files (raw images, crops, thumbnails) for signed-in annotators and staff only."""
    user = request.user
    if not user.is_authenticated:
        from rest_framework.authentication import TokenAuthentication

        try:
            found = TokenAuthentication().authenticate(request)
        except Exception:
            found = None
        if found is None:
            return JsonResponse({"detail": "Authentication credentials were not provided."}, status=401)
        user = found[0]
    if not is_annotator(user):
        return HttpResponseForbidden("needs the annotator or staff role")
    try:
        full = media_path(path)
    except ValueError:
        raise Http404("no such file") from None
    if not full.is_file() or full.name.startswith("."):
        raise Http404("no such file")
    ctype = mimetypes.guess_type(full.name)[0] or "application/octet-stream"
    response = FileResponse(open(full, "rb"), content_type=ctype)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _annotator_page(request, template: str, context: dict | None = None):
    if not is_annotator(request.user):
        return render(request, "facecurate/no_role.html", status=403)
    return render(request, template, {**(context or {}), **_role_context(request)})


@login_required
def run_report(request, pk: int):
    from facecurate.runs.models import PipelineRun

    run = get_object_or_404(PipelineRun.objects.select_related("unlabeled_dataset"), pk=pk)
    return _annotator_page(request, "facecurate/run.html", {"run": run})


@login_required
def run_queue(request, pk: int):
    from facecurate.runs.models import PipelineRun

    run = get_object_or_404(PipelineRun.objects.select_related("unlabeled_dataset"), pk=pk)
    return _annotator_page(request, "facecurate/queue.html", {"run": run})


@login_required
def merge_queue(request, pk: int):
    from facecurate.runs.models import PipelineRun

    run = get_object_or_404(PipelineRun.objects.select_related("unlabeled_dataset"), pk=pk)
    return _annotator_page(request, "facecurate/merges.html", {"run": run})


@login_required
def guided_review(request, pk: int):
    from facecurate.runs.models import PipelineRun

    run = get_object_or_404(PipelineRun.objects.select_related("unlabeled_dataset"), pk=pk)
    return _annotator_page(request, "facecurate/guided.html", {"run": run})


@login_required
def cluster_review(request, pk: int):
    from facecurate.runs.models import Cluster

    from facecurate.runs.serializers import ClusterSerializer

    cluster = get_object_or_404(Cluster.objects.select_related(
        "run__unlabeled_dataset", "assigned_identity", "lease_user", "changed_by", "reviewed_by"), pk=pk)
    # the cluster and the run's labeled sets come in the page: no API calls for them when it opens
    labeled = cluster.run.labeled_datasets.order_by("name").only("id", "name")
    data = ClusterSerializer(cluster, context={"request": request}).data
    return _annotator_page(request, "facecurate/cluster.html",
                           {"cluster": cluster, "run": cluster.run, "labeled_sets": labeled, "cluster_data": data})
