"""Runs over the API: start (staff, 202 + job URL), read, cancel; the review queue and clusters."""
from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from facecurate.accounts.permissions import IsAnnotator, IsStaffRole
from facecurate.datasets.models import Face
from facecurate.datasets.serializers import media_url
from facecurate.jobs.services import JobConflict, cancel_job

from .models import Cluster, PipelineRun, ReviewAction
from .serializers import (
    AcceptMergesRequest,
    AssignRequest,
    MergeAnswerRequest,
    ReviewItemSerializer,
    ClusterSerializer,
    ConfirmRequest,
    IdentityMatchSerializer,
    LeaseRequest,
    MergeRequest,
    MoveRequest,
    NotAFaceRequest,
    RejectRequest,
    ReviewActionSerializer,
    ReviewAnswerRequest,
    ReviewErrorSerializer,
    ReviewOutcomeSerializer,
    SkipRequest,
    SplitRequest,
    RunCreateSerializer,
    RunFaceSerializer,
    RunReportSerializer,
    RunSerializer,
    reviewed_counts,
)
from .services import merge_queue, queries, review
from .services.start import RunRequestError, start_run
from .services.strips import queue_strips


def _int_param(request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit():
        raise ValidationError({name: "must be a non-negative integer"})
    return int(value)


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Pipeline runs: embed, separate overlap, cluster, score p-, store. Staff start and cancel them."""

    queryset = PipelineRun.objects.select_related("job", "job__created_by", "recognizer", "unlabeled_dataset",
                                                  "created_by").prefetch_related("labeled_datasets")

    def get_queryset(self):
        if self.action in ("clusters", "identities"):  # the queue and the type-ahead need the run's id only
            return PipelineRun.objects.only("id")
        return super().get_queryset()

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
        return Response({**body, "job_url": url}, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": str(body["url"])})

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
        strips = queue_strips([c["id"] for c in data])
        for c in data:
            c["thumbnails"] = [media_url(t) for t in strips.get(c["id"], [])]
        return Response({"results": data, "next": next_url})


    @extend_schema(parameters=[OpenApiParameter("q", str, description="part of the name (ignoring case)"),
                               OpenApiParameter("limit", int, description="1..50, default 20")],
                   responses={200: IdentityMatchSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def identities(self, request, pk=None):
        """Type-ahead over the names of the run's labeled identities (names starting with ``q`` first).
        Only finds; creating an identity is the explicit ``new_identity`` of a cluster's assign."""
        limit = min(max(_int_param(request, "limit") or 20, 1), 50)
        rows = queries.identity_search(self.get_object(), request.query_params.get("q", ""), limit)
        return Response([{"id": i.pk, "name": i.name, "dataset": i.dataset_id, "dataset_name": i.dataset.name}
                         for i in rows])

    def list(self, request, *args, **kwargs):  # last in the class: the decorators above use the builtin list()
        """Runs with their clusters per review state: one grouped query per page, not one per run."""
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        context = {**self.get_serializer_context(), "reviewed": reviewed_counts([r.pk for r in page])}
        return self.get_paginated_response(self.get_serializer_class()(page, many=True, context=context).data)


    @extend_schema(parameters=[OpenApiParameter("limit", int, description="1..200, default 50"),
                               OpenApiParameter("face", int, description="only this rejected face's likely clusters")],
                   responses={200: ReviewItemSerializer(many=True)})
    @action(detail=True, methods=["get"], url_path="merge-queue")
    def merge_queue(self, request, pk=None):
        """"Same person?" items: cluster pairs from a centroid kNN and rejected faces against their likely
        clusters, by the expected pairwise errors a yes fixes (merge model probability x pairs joined)."""
        run = self.get_object()
        limit = min(max(_int_param(request, "limit") or 50, 1), 200)
        items = merge_queue.merge_items(run, face=_int_param(request, "face"))[:limit]
        return Response(_items(items))

    @extend_schema(parameters=[OpenApiParameter("limit", int, description="1..200, default 50")],
                   responses={200: ReviewItemSerializer(many=True)})
    @action(detail=True, methods=["get"], url_path="review-queue")
    def review_queue(self, request, pk=None):
        """One queue of clean-ups, merges and placements by expected pairwise errors fixed per action."""
        limit = min(max(_int_param(request, "limit") or 50, 1), 200)
        return Response(_items(merge_queue.review_items(self.get_object())[:limit]))

    @extend_schema(request=MergeAnswerRequest, responses={200: inline_serializer("MergeAnswer", {
        "action": serializers.DictField(allow_null=True), "clusters": serializers.ListField(),
        "results": serializers.ListField(), "created_cluster": serializers.IntegerField(allow_null=True)}),
        **{k: ReviewErrorSerializer for k in (400, 403, 404, 409)}})
    @action(detail=True, methods=["post"], url_path="merge-answer", permission_classes=[IsAnnotator])
    def merge_answer(self, request, pk=None):
        """Answer a merge-queue item: yes merges the pair (or places the rejected face), no is recorded."""
        run = self.get_object()
        data = MergeAnswerRequest(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            if not Cluster.objects.filter(pk=v["cluster"], run=run).exists():
                raise review.ReviewError(f"no cluster {v['cluster']} in run {run.pk}", "unknown_cluster", 404)
            if "face" in v:
                out = merge_queue.answer_face(request.user, v["cluster"], v["version"], v["face"], v["same"])
            else:
                out = merge_queue.answer_pair(request.user, v["cluster"], v["version"], v["other"],
                                              v.get("other_version"), v["same"])
        except (review.ReviewError) as exc:
            return Response(exc.as_dict(), status=exc.status)
        except Cluster.DoesNotExist:
            return Response({"detail": "no such cluster", "code": "unknown_cluster"}, status=404)
        return _outcome(request, out)

    @extend_schema(request=ReviewAnswerRequest, responses={200: ReviewOutcomeSerializer(many=True), **{
        k: ReviewErrorSerializer for k in (400, 403, 404, 409)}})
    @action(detail=True, methods=["post"], url_path="review-answer", permission_classes=[IsAnnotator])
    def review_answer(self, request, pk=None):
        """One decision on a review-queue item with partners: a merge group (the same ones merge in, the
        rest are recorded as other people) or a rejected face (joins the chosen cluster, or none). All or
        nothing; the outcomes list every action made (undo them in reverse order to take it back)."""
        run = self.get_object()
        data = ReviewAnswerRequest(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        ids = [o["id"] for o in v["others"]] + ([v["cluster"]] if "cluster" in v else [])
        known = set(Cluster.objects.filter(run=run, pk__in=ids).values_list("pk", flat=True))
        if missing := [i for i in ids if i not in known]:
            return Response({"detail": f"no cluster {missing[0]} in run {run.pk}", "code": "unknown_cluster"},
                            status=404)
        if "face" in v and not run.faces.filter(pk=v["face"]).exists():
            return Response({"detail": f"no face {v['face']} in run {run.pk}", "code": "unknown_face"}, status=404)
        try:
            if "face" in v:
                outs = merge_queue.answer_face_group(request.user, v["face"], v["others"], v["chosen"])
            else:
                outs = merge_queue.answer_group(request.user, v["cluster"], v["version"], v["others"], v["same"])
        except review.ReviewError as exc:
            return Response(exc.as_dict(), status=exc.status)
        return Response([_outcome(request, o).data for o in outs])


def _items(items) -> list[dict]:
    """Review items with what a page shows of their clusters (size, version, name, six thumbnails)."""
    from facecurate.runs.models import RunFace

    ids = {i.cluster for i in items} | {i.other for i in items if i.other} | \
        {o["id"] for i in items for o in (i.others or [])}
    info = {c.pk: {"size": c.size, "version": c.version, "name": c.name, "state": c.review_state, "thumbnails": []}
            for c in Cluster.objects.filter(pk__in=ids)}
    for cid, thumb in RunFace.objects.filter(cluster_id__in=ids).order_by("cluster_id", "p_minus", "id") \
            .values_list("cluster_id", "face__thumbnail"):
        if len(info[cid]["thumbnails"]) < 6:
            info[cid]["thumbnails"].append(media_url(thumb))
    faces = dict(RunFace.objects.filter(pk__in=[i.face for i in items if i.face]).values_list("id", "face__thumbnail"))
    return [{**i.as_dict(), "clusters": {str(k): info[k] for k in (i.cluster, i.other, *(o["id"] for o in i.others or []))
                                      if k in info},
             "face_thumbnail": media_url(faces[i.face]) if i.face in faces else None} for i in items]


_ERRORS = {400: ReviewErrorSerializer, 403: ReviewErrorSerializer, 404: ReviewErrorSerializer,
           409: ReviewErrorSerializer}


def _review_schema(request_serializer, summary: str):
    return extend_schema(request=request_serializer, responses={200: ReviewOutcomeSerializer, **_ERRORS},
                         description=summary)


def _outcome(request, outcome: review.Outcome, status_code=200) -> Response:
    ctx = {"request": request}
    return Response({
        "action": ReviewActionSerializer(outcome.action, context=ctx).data if outcome.action else None,
        "clusters": ClusterSerializer(outcome.clusters, many=True, context=ctx).data,
        "results": outcome.results,
        "created_cluster": outcome.created_cluster.pk if outcome.created_cluster else None,
    }, status=status_code)


class ClusterViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A run's clusters: read (annotators and staff) and review (one POST per decision, see the actions).
    Every review POST sends the cluster's ``version``; a stale one, or a cluster another annotator holds
    (lease), gets 409 with the reason, and nothing changes."""

    queryset = Cluster.objects.select_related("assigned_identity", "lease_user", "changed_by", "reviewed_by", "run")
    serializer_class = ClusterSerializer

    def _do(self, request, serializer_class, call):
        data = serializer_class(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            outcome = call(data.validated_data)
        except review.ReviewError as exc:
            return Response(exc.as_dict(), status=exc.status)
        return _outcome(request, outcome)

    def _id(self):
        if not str(self.kwargs["pk"]).isdigit():
            from django.http import Http404
            raise Http404("no such cluster")
        return int(self.kwargs["pk"])

    @_review_schema(ConfirmRequest, "The cluster is one person (optionally named).")
    @action(detail=True, methods=["post"], permission_classes=[IsAnnotator])
    def confirm(self, request, pk=None):
        return self._do(request, ConfirmRequest,
                        lambda v: review.confirm(request.user, self._id(), v["version"], name=v.get("name")))

    @_review_schema(RejectRequest, "These faces do not belong: they leave the cluster (excluded 'rejected'); "
                                   "with confirm the faces left are confirmed as one person in the same action.")
    @action(detail=True, methods=["post"], permission_classes=[IsAnnotator])
    def reject(self, request, pk=None):
        return self._do(request, RejectRequest,
                        lambda v: review.reject(request.user, self._id(), v["version"], v["faces"],
                                                confirm_rest=v["confirm"]))

    @_review_schema(MoveRequest, "Move these faces to another cluster of the same run.")
    @action(detail=True, methods=["post"], permission_classes=[IsAnnotator])
    def move(self, request, pk=None):
        return self._do(request, MoveRequest, lambda v: review.move(
            request.user, self._id(), v["version"], v["faces"], v["target"], v.get("target_version")))

    @_review_schema(SplitRequest, "Split these faces off into a new cluster.")
    @action(detail=True, methods=["post"], permission_classes=[IsAnnotator])
    def split(self, request, pk=None):
        return self._do(request, SplitRequest, lambda v: review.split(
            request.user, self._id(), v["version"], v["faces"], name=v.get("name")))

    @_review_schema(MergeRequest, "Merge another cluster of the run into this one.")
    @action(detail=True, methods=["post"], permission_classes=[IsAnnotator])
    def merge(self, request, pk=None):
        return self._do(request, MergeRequest, lambda v: review.merge(
            request.user, self._id(), v["version"], v["other"], v.get("other_version")))

    @_review_schema(AssignRequest, "The cluster is a known identity (or, explicitly, a new one).")
    @action(detail=True, methods=["post"], permission_classes=[IsAnnotator])
    def assign(self, request, pk=None):
        def call(v):
            if "new_identity" in v:
                return review.assign_new_identity(request.user, self._id(), v["version"],
                                                  v["new_identity"]["dataset"], v["new_identity"]["name"])
            return review.assign(request.user, self._id(), v["version"], v["identity"])
        return self._do(request, AssignRequest, call)

    @_review_schema(NotAFaceRequest, "These detections (or, with no faces, the whole cluster) are not faces.")
    @action(detail=True, methods=["post"], url_path="not-a-face", permission_classes=[IsAnnotator])
    def not_a_face(self, request, pk=None):
        return self._do(request, NotAFaceRequest,
                        lambda v: review.not_a_face(request.user, self._id(), v["version"], v.get("faces") or None))

    @_review_schema(SkipRequest, "Leave the cluster for later (recorded; releases your lease).")
    @action(detail=True, methods=["post"], permission_classes=[IsAnnotator])
    def skip(self, request, pk=None):
        return self._do(request, SkipRequest, lambda v: review.skip(request.user, self._id(), v.get("version")))

    @extend_schema(request=AcceptMergesRequest, responses={200: ReviewOutcomeSerializer(many=True), **_ERRORS})
    @action(detail=True, methods=["post"], url_path="accept-merges", permission_classes=[IsAnnotator])
    def accept_merges(self, request, pk=None):
        """Accept several merge suggestions for this cluster at once (all merge into it, or none)."""
        data = AcceptMergesRequest(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            outs = merge_queue.accept_merges(request.user, self._id(), v["version"], v["others"])
        except review.ReviewError as exc:
            return Response(exc.as_dict(), status=exc.status)
        return Response([_outcome(request, o).data for o in outs])

    @extend_schema(request=LeaseRequest, responses={200: ClusterSerializer, **_ERRORS})
    @action(detail=True, methods=["post"], permission_classes=[IsAnnotator])
    def lease(self, request, pk=None):
        """Hold the cluster while it is open (acquire, then renew every minute; release on leaving).
        Another annotator's lease: 409 naming them."""
        data = LeaseRequest(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            c = review.lease(request.user, self._id(), data.validated_data["op"], data.validated_data["seconds"])
        except review.ReviewError as exc:
            return Response(exc.as_dict(), status=exc.status)
        return Response(ClusterSerializer(c, context={"request": request}).data)

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
        rows = ClusterSerializer([m["cluster"] for m in s["merges"]], many=True, context={"request": request}).data
        merges = [{**row, "similarity": m["similarity"], "thumbnails": [media_url(thumbs[f]) for f in m["faces"]]}
                  for row, m in zip(rows, s["merges"])]
        idents = [{"identity": i["identity"], "name": i["name"], "score": i["score"],
                   "thumbnails": [media_url(thumbs[f]) for f in i["faces"]]} for i in s["identities"]]
        return Response({"merges": merges, "identities": idents})


class ReviewActionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The review audit log, newest first: who did what to which cluster, and when; undo."""

    serializer_class = ReviewActionSerializer

    def get_queryset(self):
        qs = ReviewAction.objects.select_related("user", "undone_by").order_by("-id")
        params = self.request.query_params
        for key, fld in (("run", "run_id"), ("cluster", "cluster_id")):
            if params.get(key):
                qs = qs.filter(**{fld: params[key]}) if params[key].isdigit() else qs.none()
        if params.get("user") == "me":
            qs = qs.filter(user=self.request.user)
        elif params.get("user"):
            qs = qs.filter(user__username=params["user"])
        if params.get("undone") in ("0", "false"):
            qs = qs.filter(undone_at__isnull=True)
        elif params.get("undone") in ("1", "true"):
            qs = qs.filter(undone_at__isnull=False)
        return qs

    @extend_schema(parameters=[OpenApiParameter("run", int), OpenApiParameter("cluster", int),
                               OpenApiParameter("user", str, description="a user name, or 'me'"),
                               OpenApiParameter("undone", bool)])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses={200: ReviewOutcomeSerializer, **_ERRORS})
    @action(detail=True, methods=["post"], permission_classes=[IsAnnotator])
    def undo(self, request, pk=None):
        """Put back what the action changed; 409 when a later action changed the same rows."""
        if not str(pk).isdigit():
            return Response({"detail": "no such action", "code": "unknown_action"}, status=404)
        try:
            outcome = review.undo(request.user, int(pk))
        except review.ReviewError as exc:
            return Response(exc.as_dict(), status=exc.status)
        return _outcome(request, outcome)
