"""Datasets of faces: labeled (identities) or unlabeled, one Face per source image.

Room is left for what comes later, each as its own model pointing at Face/Dataset:
embeddings per (face, model version), clusters and cluster membership per clustering run,
per-face scores (max-logit, overlap state, p-) per run, review actions by annotators, and
recognizer model versions.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower


class Dataset(models.Model):
    class Kind(models.TextChoices):
        LABELED = "labeled"
        UNLABELED = "unlabeled"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    aligned = models.BooleanField(
        default=False,
        help_text="Images are already aligned 112x112 face crops: keep them as the crop "
        "(detection still runs and is recorded, but a miss is not an error).",
    )
    description = models.TextField(blank=True, default="")
    provenance = models.JSONField(
        default=dict, blank=True, help_text="Where the images came from: source, licence, import paths."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # Names are stored normalised (facecurate.names) and unique ignoring case.
            models.UniqueConstraint(Lower("name"), name="dataset_unique_name_ci"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_labeled(self) -> bool:
        return self.kind == self.Kind.LABELED

    def media_dir(self) -> str:
        return f"datasets/{self.pk}"


class Identity(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="identities")
    name = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "name"], name="identity_unique_name"),
            models.UniqueConstraint("dataset", Lower("name"), name="identity_unique_name_ci"),
        ]
        verbose_name_plural = "identities"

    def __str__(self) -> str:
        return self.name


class Face(models.Model):
    """One source image and its primary face.

    ``status`` is ``pending`` until a worker has looked at it, then ``ok`` (a face, with crop),
    ``no_face`` (kept, no crop) or ``error`` (unreadable image; ``error`` says why).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        OK = "ok"
        NO_FACE = "no_face"
        ERROR = "error"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="faces")
    identity = models.ForeignKey(
        Identity, null=True, blank=True, on_delete=models.RESTRICT, related_name="faces"
    )
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="faces",
        help_text="The ingestion job that brought this face in.",
    )
    source_name = models.CharField(max_length=1024, help_text="Original file name or path.")
    file = models.CharField(max_length=512, help_text="Stored source image, relative to MEDIA_ROOT.")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True, default="")
    num_faces = models.PositiveIntegerField(null=True, blank=True, help_text="Faces found in the image.")
    box = models.JSONField(null=True, blank=True, help_text="[x, y, width, height] of the kept face.")
    landmarks = models.JSONField(null=True, blank=True, help_text="5 [x, y] points: eyes, nose, mouth corners.")
    det_score = models.FloatField(null=True, blank=True)
    crop = models.CharField(max_length=512, blank=True, default="", help_text="Aligned 112x112 PNG crop.")
    thumbnail = models.CharField(max_length=512, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["dataset", "sha256"], name="face_unique_sha256")]
        indexes = [
            models.Index(fields=["dataset", "status"]),
            models.Index(fields=["job", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.dataset_id}:{self.source_name}"
