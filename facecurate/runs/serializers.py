from __future__ import annotations

from rest_framework import serializers

from facecurate.datasets.models import Dataset, Identity
from facecurate.datasets.serializers import media_url
from facecurate.jobs.serializers import JobSerializer
from facecurate.recognition.models import RecognizerVersion

from .models import Cluster, PipelineRun, ReviewAction, RunFace


class RunCreateSerializer(serializers.Serializer):
    unlabeled_dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
    labeled_datasets = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all(), many=True, required=False,
                                                          help_text="Labeled datasets whose identities are known.")
    recognizer = serializers.PrimaryKeyRelatedField(queryset=RecognizerVersion.objects.all(), required=False,
                                                    allow_null=True, help_text="Default: the active version.")
    method = serializers.CharField(default="infomap", max_length=32)
    params = serializers.DictField(required=False, help_text="Clustering settings over the method's defaults.")
    truth_from_folders = serializers.BooleanField(
        default=False, help_text="The images' parent folders name the people: compute quality metrics.")
    overlap_confidence = serializers.FloatField(required=False, min_value=0.51, max_value=0.999)


class RunSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="run-detail")
    job = JobSerializer(read_only=True)
    labeled_datasets = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    recognizer_name = serializers.CharField(source="recognizer.name", read_only=True)
    unlabeled_dataset_name = serializers.CharField(source="unlabeled_dataset.name", read_only=True)
    reviewed = serializers.SerializerMethodField()
    labeled_dataset_names = serializers.SerializerMethodField()

    class Meta:
        model = PipelineRun
        fields = ["id", "url", "job", "unlabeled_dataset", "unlabeled_dataset_name", "labeled_datasets",
                  "labeled_dataset_names",
                  "recognizer", "recognizer_name", "method", "params", "options", "stages", "counts", "metrics",
                  "reviewed", "created_by", "created_at"]
        read_only_fields = fields

    def get_labeled_dataset_names(self, run: PipelineRun) -> list[str]:
        """The labeled datasets' names, in the order of ``labeled_datasets`` (prefetched: no query per run)."""
        return [d.name for d in run.labeled_datasets.all()]

    def get_reviewed(self, run: PipelineRun) -> dict[str, int]:
        """Clusters per review state (a list view hands them over for the whole page in ``reviewed``)."""
        page = self.context.get("reviewed")
        return page[run.pk] if page is not None and run.pk in page else reviewed_counts([run.pk])[run.pk]


def reviewed_counts(run_ids: list[int]) -> dict[int, dict[str, int]]:
    """{run id: clusters per review state}, in one grouped query."""
    from django.db.models import Count

    out = {r: {s: 0 for s in Cluster.Review.values} for r in run_ids}
    for row in Cluster.objects.filter(run_id__in=run_ids).values("run_id", "review_state").order_by() \
            .annotate(n=Count("id")):
        out[row["run_id"]][row["review_state"]] = row["n"]
    return out


class RunReportSerializer(RunSerializer):
    class Meta(RunSerializer.Meta):
        fields = RunSerializer.Meta.fields + ["overlap_report", "uncertainty_report"]
        read_only_fields = fields


class ClusterSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="cluster-detail")
    assigned_identity_name = serializers.CharField(source="assigned_identity.name", read_only=True, default=None)
    lease_user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    changed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    reviewed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    sum_p_minus = serializers.SerializerMethodField(
        help_text="Expected number of wrong members: the sum of the members' p- (mean p- times size).")

    class Meta:
        model = Cluster
        fields = ["id", "url", "run", "number", "size", "priority", "mean_p_minus", "max_p_minus", "sum_p_minus",
                  "review_state",
                  "name", "assigned_identity", "assigned_identity_name", "carried_from", "version", "lease_user",
                  "lease_until", "reviewed_by", "reviewed_at", "changed_by", "changed_at"]
        read_only_fields = fields

    def get_sum_p_minus(self, c: Cluster) -> float | None:
        return None if c.mean_p_minus is None else float(c.mean_p_minus) * c.size


class RunFaceSerializer(serializers.ModelSerializer):
    face = serializers.IntegerField(source="face_id", read_only=True)
    image = serializers.IntegerField(source="face.image_id", read_only=True)
    image_name = serializers.CharField(source="face.image.source_name", read_only=True, default=None)
    thumbnail_url = serializers.SerializerMethodField()
    crop_url = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()
    box = serializers.JSONField(source="face.box", read_only=True)
    predicted_identity_name = serializers.CharField(source="predicted_identity.name", read_only=True, default=None)

    class Meta:
        model = RunFace
        fields = ["id", "face", "image", "cluster", "original_cluster", "p_minus", "margin", "max_logit",
                  "predicted_identity", "predicted_identity_name", "predicted_score", "overlap_state", "excluded",
                  "image_name", "thumbnail_url", "crop_url", "image_url", "box"]
        read_only_fields = fields

    def get_thumbnail_url(self, rf: RunFace) -> str | None:
        return media_url(rf.face.thumbnail)

    def get_crop_url(self, rf: RunFace) -> str | None:
        return media_url(rf.face.crop)

    def get_image_url(self, rf: RunFace) -> str | None:
        return media_url(rf.face.image.file)


class ReviewActionSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    undone_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    summary = serializers.SerializerMethodField()

    class Meta:
        model = ReviewAction
        fields = ["id", "run", "cluster", "user", "kind", "summary", "payload", "created_at", "undone_at", "undone_by"]
        read_only_fields = fields

    def _identity_name(self, identity_id) -> str:
        """The identity's name (one lookup per page of actions, cached in the serializer's context)."""
        names = self.context.setdefault("_identity_names", {})
        if identity_id not in names:
            ident = Identity.objects.filter(pk=identity_id).values_list("name", flat=True).first()
            names[identity_id] = ident or f"identity {identity_id} (deleted)"
        return names[identity_id]

    def get_summary(self, a) -> str:
        """One line saying what the action did."""
        p = a.payload or {}
        n = len(p.get("faces") or [])
        target = p.get("target")
        return {
            "confirm": f"confirmed cluster {a.cluster_id}",
            "reject": f"rejected {n} face(s) from cluster {a.cluster_id}" +
                      (" and confirmed the rest" if p.get("confirmed") else ""),
            "move": f"moved {n} face(s) from cluster {a.cluster_id} to {target}",
            "split": f"split {n} face(s) off cluster {a.cluster_id} into {target}",
            "merge": f"merged cluster {target} into {a.cluster_id} ({n} faces)",
            "assign": f"assigned cluster {a.cluster_id} to {self._identity_name(p.get('identity'))}",
            "not_a_face": f"marked {n} face(s) of cluster {a.cluster_id} not a face",
            "skip": f"skipped cluster {a.cluster_id}",
        }.get(a.kind, a.kind)


def _version_field():
    return serializers.IntegerField(min_value=1, help_text="The cluster's version you are looking at (409 if stale).")


def _faces_field(required=True):
    return serializers.ListField(child=serializers.IntegerField(), required=required, allow_empty=not required,
                                 max_length=5000, help_text="Run-face ids (RunFace.id) of this cluster.")


class ConfirmRequest(serializers.Serializer):
    version = _version_field()
    name = serializers.CharField(required=False, allow_blank=True, max_length=255)


class FacesRequest(serializers.Serializer):
    version = _version_field()
    faces = _faces_field()


class RejectRequest(FacesRequest):
    confirm = serializers.BooleanField(default=False, help_text="Also confirm the faces left as one person "
                                                                 "(one action, one undo).")


class NotAFaceRequest(serializers.Serializer):
    version = _version_field()
    faces = _faces_field(required=False)


class MoveRequest(serializers.Serializer):
    version = _version_field()
    faces = _faces_field()
    target = serializers.IntegerField(help_text="The cluster (same run) the faces go to.")
    target_version = serializers.IntegerField(required=False, min_value=1)


class SplitRequest(serializers.Serializer):
    version = _version_field()
    faces = _faces_field()
    name = serializers.CharField(required=False, allow_blank=True, max_length=255)


class MergeRequest(serializers.Serializer):
    version = _version_field()
    other = serializers.IntegerField(help_text="The cluster (same run) merged into this one.")
    other_version = serializers.IntegerField(required=False, min_value=1)


class NewIdentity(serializers.Serializer):
    dataset = serializers.IntegerField(help_text="A labeled dataset of the run.")
    name = serializers.CharField(max_length=255)


class AssignRequest(serializers.Serializer):
    version = _version_field()
    identity = serializers.IntegerField(required=False, help_text="A known identity of the run's labeled datasets.")
    new_identity = NewIdentity(required=False, help_text="Create this identity (explicitly) and assign it.")

    def validate(self, data):
        if ("identity" in data) == ("new_identity" in data):
            raise serializers.ValidationError("send exactly one of identity and new_identity")
        return data


class SkipRequest(serializers.Serializer):
    version = serializers.IntegerField(required=False, min_value=1)


class LeaseRequest(serializers.Serializer):
    op = serializers.ChoiceField(choices=["acquire", "renew", "release"], default="acquire")
    seconds = serializers.IntegerField(required=False, min_value=10, max_value=900, default=120)


class FaceResult(serializers.Serializer):
    id = serializers.IntegerField()
    ok = serializers.BooleanField()
    code = serializers.CharField(required=False)
    detail = serializers.CharField(required=False)


class ReviewOutcomeSerializer(serializers.Serializer):
    action = ReviewActionSerializer(allow_null=True)
    clusters = ClusterSerializer(many=True)
    results = FaceResult(many=True)
    created_cluster = serializers.IntegerField(allow_null=True)


class ReviewErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    results = FaceResult(many=True, required=False)


class IdentityMatchSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    dataset = serializers.IntegerField()
    dataset_name = serializers.CharField()


class MergeAnswerRequest(serializers.Serializer):
    cluster = serializers.IntegerField(help_text="The item's cluster.")
    version = _version_field()
    other = serializers.IntegerField(required=False, help_text="A pair item's other cluster.")
    other_version = serializers.IntegerField(required=False, min_value=1)
    face = serializers.IntegerField(required=False, help_text="A placement item's rejected run-face.")
    same = serializers.BooleanField(help_text="Yes: one person (merge / place the face); no: recorded, not asked again.")

    def validate(self, data):
        if ("other" in data) == ("face" in data):
            raise serializers.ValidationError("send either other (a pair of clusters) or face (a rejected face)")
        return data


class MergeTarget(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField(min_value=1)


class AcceptMergesRequest(serializers.Serializer):
    version = _version_field()
    others = MergeTarget(many=True, help_text="Clusters merged into this one, in order (all or none).")


class ReviewAnswerRequest(serializers.Serializer):
    """One decision on a review-queue item with its partners (``others``): a merge group (``cluster`` and
    its ``version``; ``same``: the partners that are this person) or a rejected face (``face``; ``chosen``:
    the partner that is its person, or null for none)."""

    cluster = serializers.IntegerField(required=False, help_text="A merge group's cluster.")
    version = serializers.IntegerField(required=False, min_value=1, help_text="That cluster's version.")
    face = serializers.IntegerField(required=False, help_text="A placement's rejected run-face.")
    others = MergeTarget(many=True, allow_empty=False, help_text="The item's partners as shown: [{id, version}].")
    same = serializers.ListField(child=serializers.IntegerField(), required=False, default=list,
                                 help_text="Merge group: the partners that are the same person (merged in); "
                                           "every other partner is recorded as not this person.")
    chosen = serializers.IntegerField(required=False, allow_null=True, default=None,
                                      help_text="Placement: the partner the face joins; null: none of them.")

    def validate(self, data):
        if ("cluster" in data) == ("face" in data):
            raise serializers.ValidationError("send either cluster (a merge group) or face (a rejected face)")
        if "cluster" in data and "version" not in data:
            raise serializers.ValidationError({"version": "the cluster's version is required"})
        ids = [o["id"] for o in data["others"]]
        if len(set(ids)) != len(ids):
            raise serializers.ValidationError({"others": "each partner once"})
        if "cluster" in data and data["cluster"] in ids:
            raise serializers.ValidationError({"others": "a cluster is not its own partner"})
        if not set(data["same"]) <= set(ids):
            raise serializers.ValidationError({"same": "only partners named in others"})
        if data["chosen"] is not None and data["chosen"] not in ids:
            raise serializers.ValidationError({"chosen": "one of the partners named in others, or null"})
        if "face" in data and data["same"]:
            raise serializers.ValidationError({"same": "a rejected face takes chosen, not same"})
        return data


class ReviewItemSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(["merge", "place", "clean"])
    cluster = serializers.IntegerField()
    other = serializers.IntegerField(allow_null=True)
    face = serializers.IntegerField(allow_null=True)
    probability = serializers.FloatField(allow_null=True, help_text="P(one identity), the merge model's.")
    gain = serializers.FloatField(help_text="Expected pairwise errors fixed.")
    actions = serializers.FloatField(help_text="Expected decisions it takes.")
    per_action = serializers.FloatField()
    others = serializers.ListField(child=serializers.DictField(), allow_null=True, help_text=(
        "A merge group (review queue): the cluster's likely partners [{id, probability}], most likely first; "
        "one decision merges the same ones and records no for the rest."))
    stage = serializers.ChoiceField(["likely", "lone", "unlikely", "last"], help_text=(
        "The review queue's pass: likely (above the merge model's floor, and clean-ups worth one), lone (each face "
        "alone and rejected face with its next nearest clusters past those answered no), unlikely (the pairs under "
        "the floor and the small clean-ups), last (every cluster past its answers, and what merges brought in)."))
    clusters = serializers.DictField(help_text="Per cluster id: size, version, name, state, thumbnails.")
    face_thumbnail = serializers.CharField(allow_null=True)
