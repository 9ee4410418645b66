from django.apps import AppConfig


class RecognitionConfig(AppConfig):
    name = "facecurate.recognition"
    verbose_name = "Recognizer versions, artifacts and embeddings"
    default_auto_field = "django.db.models.BigAutoField"
