"""Retraining requests and answers; recognizer comparisons."""
from __future__ import annotations

from rest_framework import serializers

from facecurate.datasets.models import Dataset
from facecurate.jobs.models import Job
from facecurate.jobs.serializers import JobSerializer
from facecurate.runs.models import PipelineRun

from .models import RecognizerVersion
from .services.retrain import DEFAULTS


class RecognizerSerializer(serializers.ModelSerializer):
    parent = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = RecognizerVersion
        fields = ["id", "name", "kind", "parent", "config", "metrics", "training_summary", "is_active", "created_at"]
        read_only_fields = fields


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
    lfw_pairs = serializers.BooleanField(default=True, help_text="Score both versions on LFW pairs "
                                                                  "(read from FACECURATE_SHARED_DATA/lfw).")

    OPTION_FIELDS = tuple(DEFAULTS)


class RetrainingSerializer(JobSerializer):
    """A retraining: its job, plus the version it made (or found unchanged)."""

    version = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["version"]
        read_only_fields = fields

    def get_version(self, job: Job) -> int | None:
        return (job.result or {}).get("version")
