from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers, status
from rest_framework.exceptions import APIException

from facecurate.names import MAX_DESCRIPTION_LENGTH, MAX_NAME_LENGTH, BadName, normalize_name

from .models import Dataset, Face, Identity, Image


class NameTaken(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "that name is taken"
    default_code = "name_taken"


def dataset_name_taken(name: str) -> NameTaken:
    return NameTaken(f"a dataset named {name!r} exists already (names are compared ignoring case)")


def media_url(rel: str) -> str | None:
    return reverse("media", kwargs={"path": rel}) if rel else None


class DatasetSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="dataset-detail")
    name = serializers.CharField(
        max_length=MAX_NAME_LENGTH,
        help_text="Unique ignoring case; stored in Unicode NFKC with spaces collapsed; control and "
        "invisible characters are refused.",
    )
    description = serializers.CharField(max_length=MAX_DESCRIPTION_LENGTH, required=False, allow_blank=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    image_counts = serializers.SerializerMethodField()
    face_count = serializers.SerializerMethodField()
    identity_count = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "id", "url", "name", "kind", "aligned", "description", "provenance", "created_by",
            "created_at", "updated_at", "image_counts", "face_count", "identity_count",
        ]
        # provenance is the server's record of every ingestion: nobody edits it over the API.
        read_only_fields = ["provenance", "created_by", "created_at", "updated_at"]

    def _counts(self, dataset: Dataset) -> dict:
        counts = getattr(dataset, "_counts", None)
        if counts is None:  # one object (create, retrieve): count it here
            from .services.counts import dataset_counts

            counts = dataset._counts = dataset_counts([dataset.pk])[dataset.pk]
        return counts

    def get_image_counts(self, dataset: Dataset) -> dict[str, int]:
        """Images per status: pending, ok, no_face, error, and total."""
        return self._counts(dataset)["images"]

    def get_face_count(self, dataset: Dataset) -> int:
        """Faces detected in the dataset's images (several per photo in the wild)."""
        return self._counts(dataset)["faces"]

    def get_identity_count(self, dataset: Dataset) -> int:
        return self._counts(dataset)["identities"]

    def validate_name(self, value: str) -> str:
        try:
            name = normalize_name(value)
        except BadName as exc:
            raise serializers.ValidationError(exc.message, code=exc.code) from None
        clash = Dataset.objects.filter(name__iexact=name)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise dataset_name_taken(name)
        return name

    def validate(self, attrs):
        if self.instance is not None and "kind" in attrs and attrs["kind"] != self.instance.kind:
            if self.instance.images.exists():
                raise serializers.ValidationError({"kind": "cannot change the kind of a dataset with images"})
        return attrs


class IdentitySerializer(serializers.ModelSerializer):
    face_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Identity
        fields = ["id", "dataset", "name", "face_count", "created_at"]


class ImageSerializer(serializers.ModelSerializer):
    identity = serializers.SlugRelatedField(slug_field="name", read_only=True)
    file_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    face_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = Image
        fields = [
            "id", "dataset", "identity", "job", "source_name", "sha256", "size_bytes", "width", "height",
            "status", "error", "num_faces", "face_count", "file_url", "thumbnail_url", "created_at", "processed_at",
        ]
        read_only_fields = fields

    def get_file_url(self, image: Image) -> str | None:
        return media_url(image.file)

    def get_thumbnail_url(self, image: Image) -> str | None:
        return media_url(image.thumbnail)


class FaceSerializer(serializers.ModelSerializer):
    identity = serializers.SlugRelatedField(slug_field="name", read_only=True)
    crop_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = Face
        fields = [
            "id", "image", "dataset", "identity", "index", "is_primary", "box", "landmarks", "det_score",
            "crop_url", "thumbnail_url", "image_url", "created_at",
        ]
        read_only_fields = fields

    def get_crop_url(self, face: Face) -> str | None:
        return media_url(face.crop)

    def get_thumbnail_url(self, face: Face) -> str | None:
        return media_url(face.thumbnail)

    def get_image_url(self, face: Face) -> str | None:
        return media_url(face.image.file)


class UploadRequestSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True), allow_empty=False,
        help_text="Images and/or zip archives (zip folders name identities in labeled sets).",
    )
    identity = serializers.CharField(
        required=False, allow_blank=False, max_length=255,
        help_text="Identity for plain image files uploaded to a labeled dataset.",
    )


class ImportRequestSerializer(serializers.Serializer):
    path = serializers.CharField(
        max_length=4096,
        help_text="Folder relative to FACECURATE_IMPORT_ROOT; for labeled datasets one sub-folder per identity.",
    )


class ManifestEntrySerializer(serializers.Serializer):
    path = serializers.CharField(max_length=4096, help_text="Image file relative to FACECURATE_IMPORT_ROOT.")
    identity = serializers.CharField(required=False, allow_null=True, max_length=255)


class ManifestRequestSerializer(serializers.Serializer):
    entries = ManifestEntrySerializer(many=True, required=False)
    manifest = serializers.FileField(
        required=False, help_text="A CSV (header: path,identity) or JSON manifest file instead of entries."
    )


class RejectedSerializer(serializers.Serializer):
    name = serializers.CharField()
    code = serializers.CharField()
    reason = serializers.CharField()


class AcceptedSerializer(serializers.Serializer):
    name = serializers.CharField()
    image_id = serializers.IntegerField(
        allow_null=True, help_text="The pending image (uploads); null for imports and manifests, "
        "whose files the worker reads and stores.")
    identity = serializers.CharField(allow_null=True)


class IngestResponseSerializer(serializers.Serializer):
    job = serializers.UUIDField()
    job_url = serializers.CharField()
    queued = serializers.IntegerField(help_text="Files (or manifest entries) handed to the worker.")
    accepted = AcceptedSerializer(many=True, help_text="Files accepted (uploads: stored as pending images; "
                                  "imports and manifests: handed to the worker).")
    rejected = RejectedSerializer(many=True, help_text="Files refused, each with a reason.")


class DatasetBusySerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="Which unfinished run uses the dataset (its job id) and what to do.")
    code = serializers.CharField(help_text="dataset_busy")


class NothingAcceptedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField(help_text="nothing_accepted")
    accepted = AcceptedSerializer(many=True, help_text="Always empty.")
    rejected = RejectedSerializer(many=True, help_text="Every file, each with the reason it was refused.")
