"""Recognizer versions, the files stages write (artifacts), and embeddings per (dataset, version).

* ``RecognizerVersion``: the embedder (the bundled SFace ONNX by default, or a trained checkpoint), its
  parent, config and metrics. Exactly one is active (a partial unique constraint; promotion swaps it
  in one transaction).
* ``Artifact``: every file a stage writes, under ``FACECURATE_ARTIFACT_ROOT``: path, kind, size, sha256,
  format version and the job that made it. Files are written to a temp name and renamed, then recorded.
* ``EmbeddingFile``: one artifact of embeddings (float32 N x d + the face ids of its rows) for a
  (dataset, recognizer version). A dataset's embeddings are the union of its files; only faces with no
  embedding yet are embedded again. Vectors are never stored one row each in the database.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class RecognizerVersion(models.Model):
    class Kind(models.TextChoices):
        ONNX = "onnx", "ONNX face model"
        CHECKPOINT = "checkpoint", "trained checkpoint"

    class State(models.TextChoices):
        EVALUATING = "evaluating", "trained, being evaluated"
        READY = "ready", "ready"
        FAILED = "failed", "failed (never offered for promotion)"

    class Verdict(models.TextChoices):
        NONE = "", "not a retraining"
        BETTER = "better", "better than its parent"
        NOT_BETTER = "not_better", "not better than its parent"
        UNKNOWN = "unknown", "not measured on the new domain"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ONNX)
    path = models.CharField(max_length=1024, blank=True, default="",
                            help_text="ONNX file (empty: the bundled SFace) or checkpoint, relative to ARTIFACT_ROOT.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    training_summary = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.READY,
                             help_text="A retraining's version is 'evaluating' until its benchmarks are done.")
    verdict = models.CharField(max_length=16, choices=Verdict.choices, default=Verdict.NONE, blank=True,
                               help_text="Better than its parent on the new domain? (services.retrain_verdict)")
    verdict_detail = models.JSONField(default=dict, blank=True, help_text="The rule and the numbers behind the verdict.")
    promotions = models.JSONField(default=list, blank=True,
                                  help_text="Each promotion: who, when, the verdict then, override and its reason.")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                            help_text="The retraining job that made this version.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_recognizer"),
        ]

    def __str__(self) -> str:
        return self.name


class Artifact(models.Model):
    class Kind(models.TextChoices):
        EMBEDDINGS = "embeddings"
        OVERLAP = "overlap"
        CLUSTERS = "clusters"
        UNCERTAINTY = "uncertainty"
        CENTROIDS = "centroids"
        CLASS_MEANS = "class_means"
        CHECKPOINT = "checkpoint"
        REPORT = "report"

    path = models.CharField(max_length=1024, unique=True, help_text="Relative to FACECURATE_ARTIFACT_ROOT.")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    format_version = models.PositiveSmallIntegerField(default=1)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="artifacts")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.path


class EmbeddingFile(models.Model):
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="embedding_files")
    recognizer = models.ForeignKey(RecognizerVersion, on_delete=models.CASCADE, related_name="embedding_files")
    artifact = models.OneToOneField(Artifact, on_delete=models.PROTECT, related_name="embedding_file")
    count = models.PositiveIntegerField()
    dim = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["dataset", "recognizer"], name="embfile_dataset_version_idx")]
