from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "facecurate.web"
    label = "web"
    verbose_name = "Browser UI"
