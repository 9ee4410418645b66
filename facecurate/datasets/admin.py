from django.contrib import admin

from .models import Dataset, Face, Identity


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "aligned", "created_at")


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ("name", "dataset")
    list_filter = ("dataset",)


@admin.register(Face)
class FaceAdmin(admin.ModelAdmin):
    list_display = ("id", "dataset", "source_name", "status", "num_faces")
    list_filter = ("dataset", "status")
    search_fields = ("source_name", "sha256")
