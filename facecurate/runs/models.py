"""Pipeline runs and what they store: per-face scores, clusters, and the review decisions on them.

* ``PipelineRun`` (one per Job of kind ``pipeline_run``): the unlabeled dataset, the labeled datasets,
  the recognizer version, the clustering method and its settings, per-stage state and timings, the EVT
  fits behind the paper's Fig. 3 / Fig. 4c, counts, and ground-truth metrics where the faces have some.
* ``EmbedChunk``: a slice of faces to embed, claimed compare-and-set by whichever worker gets to it
  (the run fans the embedding out as one Celery task per chunk on the "gpu" queue).
* ``RunFace``: per face per run: max-logit, predicted labeled identity and its score, overlap state,
  cluster (as computed and as reviewed), p-, and whether a reviewer excluded it.
* ``Cluster``: size, review priority, review state, assigned labeled identity, a version for
  optimistic locking and a lease for the annotator who has it open.
* ``ReviewAction``: the audit log of review decisions, each undoable (it stores what it changed).
"""
from __future__ import annotations

from django.conf import settings
from django.db import models


class PipelineRun(models.Model):
    STAGES = ("embed", "overlap", "cluster", "uncertainty", "store", "candidates")

    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="pipeline_run")
    unlabeled_dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="runs")
    labeled_datasets = models.ManyToManyField("datasets.Dataset", blank=True, related_name="runs_as_labeled")
    recognizer = models.ForeignKey("recognition.RecognizerVersion", on_delete=models.PROTECT, related_name="runs")
    method = models.CharField(max_length=32, default="infomap")
    params = models.JSONField(default=dict, blank=True, help_text="Clustering settings over the method's defaults.")
    options = models.JSONField(default=dict, blank=True, help_text="Overlap, p- and ground-truth options.")
    stages = models.JSONField(default=dict, blank=True, help_text="Per stage: state, started_at, seconds, notes.")
    overlap_report = models.JSONField(default=dict, blank=True)
    uncertainty_report = models.JSONField(default=dict, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.unlabeled_dataset}"

    def stage_done(self, name: str) -> bool:
        return self.stages.get(name, {}).get("state") == "done"


class EmbedChunk(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="chunks")
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+")
    face_ids = models.JSONField(help_text="The faces this chunk embeds.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    worker = models.CharField(max_length=200, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "state"], name="chunk_run_state_idx")]


class Cluster(models.Model):
    class Review(models.TextChoices):
        PENDING = "pending"
        CONFIRMED = "confirmed"
        DISMISSED = "dismissed"

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="clusters")
    number = models.IntegerField(null=True, blank=True,
                                 help_text="Row in the run's centroid artifact; null for clusters made in review.")
    size = models.PositiveIntegerField(default=0)
    priority = models.FloatField(default=0.0, help_text="Review priority: higher is more doubtful, reviewed first.")
    mean_p_minus = models.FloatField(null=True, blank=True)
    max_p_minus = models.FloatField(null=True, blank=True)
    review_state = models.CharField(max_length=16, choices=Review.choices, default=Review.PENDING)
    name = models.CharField(max_length=255, blank=True, default="")
    assigned_identity = models.ForeignKey("datasets.Identity", null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name="assigned_clusters")
    carried_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                     help_text="The confirmed cluster of an earlier run this one keeps as it was.")
    version = models.PositiveIntegerField(default=1, help_text="Bumped by every review change (optimistic lock).")
    lease_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    lease_until = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", help_text="Who made the last review change (named on a 409).")
    changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-priority", "id"]
        indexes = [
            models.Index(fields=["run", "review_state", "-priority", "id"], name="cluster_queue_idx"),
            models.Index(fields=["run", "-priority", "id"], name="cluster_priority_idx"),
            models.Index(fields=["run", "-size", "id"], name="cluster_size_idx"),
            models.Index(fields=["run", "number"], name="cluster_run_number_idx"),  # suggestions by centroid row
        ]

    def __str__(self) -> str:
        return f"cluster {self.pk} ({self.size} faces) of run {self.run_id}"


class RunFace(models.Model):
    class Overlap(models.IntegerChoices):
        OVERLAP = 1
        DISJOINT = 0
        REJECTED = -1

    class Excluded(models.TextChoices):
        NONE = "", "kept"
        REJECTED = "rejected", "rejected from its cluster"
        NOT_A_FACE = "not_a_face", "not a face"

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="faces")
    face = models.ForeignKey("datasets.Face", on_delete=models.CASCADE, related_name="run_faces")
    max_logit = models.FloatField(null=True, blank=True)
    predicted_identity = models.ForeignKey("datasets.Identity", null=True, blank=True, on_delete=models.SET_NULL,
                                           related_name="+")
    predicted_score = models.FloatField(null=True, blank=True)
    overlap_state = models.SmallIntegerField(choices=Overlap.choices, default=Overlap.DISJOINT)
    cluster = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.SET_NULL, related_name="members")
    original_cluster = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="original_members")
    p_minus = models.FloatField(null=True, blank=True)
    margin = models.FloatField(null=True, blank=True)
    excluded = models.CharField(max_length=16, choices=Excluded.choices, blank=True, default="")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["run", "face"], name="runface_unique")]
        indexes = [
            models.Index(fields=["cluster", "-p_minus", "id"], name="runface_cluster_idx"),
            models.Index(fields=["run", "overlap_state"], name="runface_overlap_idx"),
        ]


class ReviewAction(models.Model):
    class Kind(models.TextChoices):
        CONFIRM = "confirm"
        REJECT = "reject"
        MOVE = "move"
        SPLIT = "split"
        MERGE = "merge"
        ASSIGN = "assign"
        NOT_A_FACE = "not_a_face"
        SKIP = "skip"
        DISMISS = "dismiss"
        DISTINCT = "distinct"

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="review_actions")
    cluster = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.SET_NULL, related_name="actions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    payload = models.JSONField(default=dict, help_text="What the action changed, enough to undo it.")
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="review_user_idx"),
                   models.Index(fields=["run", "-id"], name="review_run_idx")]
