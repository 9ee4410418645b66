"""Datasets of photos and the faces found in them.

* ``Dataset``: labeled (identity folders) or unlabeled.
* ``Image``: one stored source file (sha256 de-duplicated per dataset), its detection status and the
  identity it was ingested under (labeled sets).
* ``Face``: one detection in an image (box, landmarks, score, aligned crop, thumbnail). A photo in the
  wild holds several people: unlabeled sets keep every face above the minimum size and score
  (``FACECURATE_MIN_FACE_PX``, ``FACECURATE_MIN_FACE_SCORE``); labeled sets keep them too but give the
  image's identity to its primary face only (the others stay unlabeled).

Embeddings live in artifact files per (dataset, recognizer version) (``facecurate.recognition``), and
everything a pipeline run computes per face lives in ``facecurate.runs``.
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


class Image(models.Model):
    """One stored source image.

    ``status`` is ``pending`` until a worker has looked at it, then ``ok`` (one or more faces),
    ``no_face`` (kept, no face) or ``error`` (unreadable image; ``error`` says why).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        OK = "ok"
        NO_FACE = "no_face"
        ERROR = "error"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    identity = models.ForeignKey(
        Identity, null=True, blank=True, on_delete=models.RESTRICT, related_name="images",
        help_text="The identity the image was ingested under (labeled sets); its primary face carries it.",
    )
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="images",
        help_text="The ingestion job that brought this image in.",
    )
    source_name = models.CharField(max_length=1024, help_text="Original file name or path.")
    file = models.CharField(max_length=512, help_text="Stored source image, relative to MEDIA_ROOT.")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True, default="")
    num_faces = models.PositiveIntegerField(null=True, blank=True, help_text="Faces the detector found.")
    thumbnail = models.CharField(max_length=512, blank=True, default="", help_text="JPEG of the whole image.")
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["dataset", "sha256"], name="face_unique_sha256")]
        indexes = [
            models.Index(fields=["dataset", "status"], name="datasets_fa_dataset_8c6381_idx"),
            models.Index(fields=["job", "status"], name="datasets_fa_job_id_813aea_idx"),
            models.Index(fields=["dataset", "id"], name="image_dataset_id_idx"),  # keyset pages per dataset
        ]

    def __str__(self) -> str:
        return f"{self.dataset_id}:{self.source_name}"


class Face(models.Model):
    """One detected face: where it is in its image, its aligned 112x112 crop and a thumbnail."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="faces")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="faces")
    identity = models.ForeignKey(
        Identity, null=True, blank=True, on_delete=models.RESTRICT, related_name="faces",
        help_text="Labeled sets: the image's identity, on its primary face only.",
    )
    index = models.PositiveSmallIntegerField(default=0, help_text="Order in the image, best detection first.")
    is_primary = models.BooleanField(default=False, help_text="The most central large face of the image.")
    box = models.JSONField(null=True, blank=True, help_text="[x, y, width, height] in the source image.")
    landmarks = models.JSONField(null=True, blank=True, help_text="5 [x, y] points: eyes, nose, mouth corners.")
    det_score = models.FloatField(null=True, blank=True)
    crop = models.CharField(max_length=512, help_text="Aligned 112x112 PNG crop.")
    thumbnail = models.CharField(max_length=512, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Not "datasets_face": that was the old one-face-per-image table (now Image), whose index names
        # the renamed table keeps.
        db_table = "datasets_face_detection"
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["image", "index"], name="face_unique_index")]
        indexes = [
            models.Index(fields=["dataset", "identity"], name="face_dataset_identity_idx"),
            models.Index(fields=["dataset", "id"], name="face_dataset_id_idx"),  # keyset pages per dataset
        ]

    def __str__(self) -> str:
        return f"face {self.pk} of image {self.image_id}"


class DatasetCounts(models.Model):
    """A dataset's counts, kept right by database triggers on every insert, delete and status change of
    its images, faces and identities (whatever code path, bulk or cascade, makes it): the datasets list
    reads one row per dataset instead of counting up to a million rows per request
    (:mod:`facecurate.datasets.triggers`). The application never writes this table."""

    dataset = models.OneToOneField(Dataset, on_delete=models.CASCADE, primary_key=True, related_name="counts")
    images_pending = models.BigIntegerField(default=0)
    images_ok = models.BigIntegerField(default=0)
    images_no_face = models.BigIntegerField(default=0)
    images_error = models.BigIntegerField(default=0)
    faces = models.BigIntegerField(default=0)
    identities = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"counts of dataset {self.dataset_id}"
