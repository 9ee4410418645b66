from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "facecurate.datasets"
    label = "datasets"
    verbose_name = "Face datasets"
