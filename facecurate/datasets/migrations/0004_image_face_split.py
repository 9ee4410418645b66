"""A face is a detection, not an image: the old one-face-per-image table becomes ``Image`` and every
processed image with a face gets one ``Face`` row carrying its box, landmarks, score, crop and identity.
No data is lost: image ids are kept, and reversing the migration copies the primary face back."""
import django.db.models.deletion
from django.db import migrations, models

BATCH = 2000


def split_faces(apps, schema_editor):
    Image = apps.get_model("datasets", "Image")
    Face = apps.get_model("datasets", "Face")
    qs = Image.objects.filter(status="ok").exclude(crop="").order_by("id")
    batch = []
    for img in qs.iterator(chunk_size=BATCH):
        batch.append(Face(
            image_id=img.id, dataset_id=img.dataset_id, identity_id=img.identity_id, index=0, is_primary=True,
            box=img.box, landmarks=img.landmarks, det_score=img.det_score, crop=img.crop, thumbnail=img.thumbnail,
        ))
        if len(batch) >= BATCH:
            Face.objects.bulk_create(batch)
            batch = []
    if batch:
        Face.objects.bulk_create(batch)


def join_faces(apps, schema_editor):
    Image = apps.get_model("datasets", "Image")
    Face = apps.get_model("datasets", "Face")
    for face in Face.objects.filter(is_primary=True).iterator(chunk_size=BATCH):
        Image.objects.filter(pk=face.image_id).update(
            box=face.box, landmarks=face.landmarks, det_score=face.det_score, crop=face.crop,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("datasets", "0003_face_identity_restrict"),
        ("jobs", "0001_initial"),
    ]

    operations = [
        migrations.RenameModel("Face", "Image"),
        migrations.AlterField(
            model_name="image", name="dataset",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="images",
                                    to="datasets.dataset"),
        ),
        migrations.AlterField(
            model_name="image", name="identity",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.RESTRICT, related_name="images",
                to="datasets.identity",
                help_text="The identity the image was ingested under (labeled sets); its primary face carries it."),
        ),
        migrations.AlterField(
            model_name="image", name="job",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                    related_name="images", to="jobs.job",
                                    help_text="The ingestion job that brought this image in."),
        ),
        migrations.CreateModel(
            name="Face",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("index", models.PositiveSmallIntegerField(default=0, help_text="Order in the image, best detection first.")),
                ("is_primary", models.BooleanField(default=False, help_text="The most central large face of the image.")),
                ("box", models.JSONField(blank=True, null=True, help_text="[x, y, width, height] in the source image.")),
                ("landmarks", models.JSONField(blank=True, null=True, help_text="5 [x, y] points: eyes, nose, mouth corners.")),
                ("det_score", models.FloatField(blank=True, null=True)),
                ("crop", models.CharField(max_length=512, help_text="Aligned 112x112 PNG crop.")),
                ("thumbnail", models.CharField(blank=True, default="", max_length=512)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("image", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="faces",
                                            to="datasets.image")),
                ("dataset", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="faces",
                                              to="datasets.dataset")),
                ("identity", models.ForeignKey(
                    blank=True, null=True, on_delete=django.db.models.deletion.RESTRICT, related_name="faces",
                    to="datasets.identity", help_text="Labeled sets: the image's identity, on its primary face only.")),
            ],
            options={"ordering": ["id"], "db_table": "datasets_face_detection"},
        ),
        migrations.AddConstraint(
            model_name="face", constraint=models.UniqueConstraint(fields=("image", "index"), name="face_unique_index"),
        ),
        migrations.AddIndex(
            model_name="face", index=models.Index(fields=["dataset", "identity"], name="face_dataset_identity_idx"),
        ),
        migrations.RunPython(split_faces, join_faces),
        migrations.RemoveField(model_name="image", name="box"),
        migrations.RemoveField(model_name="image", name="landmarks"),
        migrations.RemoveField(model_name="image", name="det_score"),
        migrations.RemoveField(model_name="image", name="crop"),
        migrations.AlterField(
            model_name="image", name="num_faces",
            field=models.PositiveIntegerField(blank=True, null=True, help_text="Faces the detector found."),
        ),
        migrations.AlterField(
            model_name="image", name="thumbnail",
            field=models.CharField(blank=True, default="", max_length=512, help_text="JPEG of the whole image."),
        ),
    ]
