"""Retraining requests and answers; recognizer comparisons."""
from __future__ import annotations

from rest_framework import serializers

from facecurate.datasets.models import Dataset
from facecurate.jobs.models import Job
from facecurate.jobs.serializers import JobSerializer
from facecurate.runs.models import PipelineRun

from .models import Artifact, RecognizerVersion
from .services.retrain import DEFAULTS, GUARD_DEFAULTS


class RecognizerSerializer(serializers.ModelSerializer):
    parent = serializers.PrimaryKeyRelatedField(read_only=True)
    checkpoint = serializers.SerializerMethodField(help_text="The checkpoint artifact of a trained version.")
    state = serializers.CharField(read_only=True, help_text="evaluating (a retraining's version until its benchmarks "
                                                            "are done), ready, or failed (never promoted).")

    class Meta:
        model = RecognizerVersion
        fields = ["id", "name", "kind", "parent", "state", "verdict", "verdict_detail", "promotions", "checkpoint",
                  "config", "metrics", "training_summary", "is_active", "job", "created_at"]
        read_only_fields = fields

    def get_checkpoint(self, v: RecognizerVersion) -> dict | None:
        if v.kind != RecognizerVersion.Kind.CHECKPOINT or not v.path:
            return None
        known = self.context.get("checkpoints")
        a = known.get(v.path) if known is not None else Artifact.objects.filter(path=v.path).first()
        if a is None:
            return {"path": v.path, "recorded": False}
        return {"id": a.pk, "path": a.path, "kind": a.kind, "size_bytes": a.size_bytes, "sha256": a.sha256,
                "format_version": a.format_version, "job": str(a.job_id) if a.job_id else None,
                "created_at": a.created_at.isoformat(), "recorded": True}


class PromoteSerializer(serializers.Serializer):
    override = serializers.BooleanField(default=False, help_text="Promote although the verdict is not 'better'.")
    reason = serializers.CharField(default="", allow_blank=True, max_length=2000,
                                   help_text="Why (required with override; kept in the version's promotions).")


class RetrainCreateSerializer(serializers.Serializer):
    parent = serializers.PrimaryKeyRelatedField(queryset=RecognizerVersion.objects.all(), required=False,
                                                allow_null=True, help_text="Default: the active version.")
    labeled_datasets = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all(), many=True,
                                                          help_text="Labeled datasets (identity folders).")
    runs = serializers.PrimaryKeyRelatedField(queryset=PipelineRun.objects.all(), many=True, required=False,
                                              help_text="Finished pipeline runs whose clusters become pseudo-identities.")
    gamma = serializers.FloatField(default=DEFAULTS["gamma"], min_value=0, max_value=20,
                                   help_text="Soft weight (1 - p-)^gamma.")
    weighting = serializers.ChoiceField(["soft", "hard"], default=DEFAULTS["weighting"],
                                       help_text="hard: every kept face weighs 1.")
    overlap = serializers.ChoiceField(["discard", "add_to_predicted"], default=DEFAULTS["overlap"],
                                      help_text="Unlabeled faces of labeled identities: discarded (paper) or added "
                                                "to their predicted identity.")
    min_cluster_size = serializers.IntegerField(default=DEFAULTS["min_cluster_size"], min_value=1)
    max_faces_per_cluster = serializers.IntegerField(default=DEFAULTS["max_faces_per_cluster"], min_value=1,
                                                     allow_null=True, help_text="Paper: up to 50 each; null: no cap.")
    max_clusters = serializers.IntegerField(default=None, min_value=0, allow_null=True,
                                            help_text="Keep only the largest pseudo-identity clusters.")
    holdout_fraction = serializers.FloatField(default=DEFAULTS["holdout_fraction"], min_value=0, max_value=0.9,
                                              help_text="Labeled identities held out (seeded) for evaluation.")
    holdout_seed = serializers.IntegerField(default=DEFAULTS["holdout_seed"], min_value=0)
    backbone = serializers.ChoiceField(["sface", "mobilefacenet"], default=DEFAULTS["backbone"],
                                      help_text="sface: fine-tune; mobilefacenet: from scratch.")
    trainable_blocks = serializers.IntegerField(default=DEFAULTS["trainable_blocks"], min_value=1, max_value=15,
                                                allow_null=True, help_text="sface: last N of 15 stages (null: all).")
    epochs = serializers.IntegerField(default=DEFAULTS["epochs"], min_value=1, max_value=1000)
    lr = serializers.FloatField(default=None, allow_null=True, min_value=1e-7, max_value=1.0)
    batch_size = serializers.IntegerField(default=DEFAULTS["batch_size"], min_value=2, max_value=4096)
    seed = serializers.IntegerField(default=DEFAULTS["seed"], min_value=0)
    lowres_copies = serializers.BooleanField(
        default=DEFAULTS["lowres_copies"], help_text="Also train on two low-resolution copies (12-24 px, scaled back) "
                                                     "of every labeled face: for a low-resolution target domain.")
    lfw_pairs = serializers.BooleanField(default=True, help_text="Score both versions on LFW pairs "
                                                                  "(read from FACECURATE_SHARED_DATA/lfw).")
    pseudo_holdout_fraction = serializers.FloatField(
        default=GUARD_DEFAULTS["pseudo_holdout_fraction"], min_value=0, max_value=0.9,
        help_text="The runs' own clusters held out whole (seeded) to score the new domain; the verdict weighs them.")
    pseudo_holdout_seed = serializers.IntegerField(default=GUARD_DEFAULTS["pseudo_holdout_seed"], min_value=0)
    eval_datasets = serializers.PrimaryKeyRelatedField(
        queryset=Dataset.objects.all(), many=True, required=False,
        help_text="Labeled datasets of the new domain to score both versions on (never trained on); when given, "
                  "the verdict is read off them.")

    OPTION_FIELDS = tuple(DEFAULTS) + tuple(GUARD_DEFAULTS)


class RetrainingSerializer(JobSerializer):
    """A retraining: its job, plus the version it made (or found unchanged)."""

    version = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["version"]
        read_only_fields = fields

    def get_version(self, job: Job) -> int | None:
        return (job.result or {}).get("version")
