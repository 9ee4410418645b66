from django.contrib import admin

from .models import Dataset, Face, Identity, Image


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "aligned", "created_at")


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ("name", "dataset")
    list_filter = ("dataset",)


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("id", "dataset", "source_name", "status", "num_faces")
    list_filter = ("dataset", "status")
    search_fields = ("source_name", "sha256")


@admin.register(Face)
class FaceAdmin(admin.ModelAdmin):
    list_display = ("id", "dataset", "image", "index", "is_primary", "identity", "det_score")
    list_filter = ("dataset", "is_primary")
    raw_id_fields = ("image", "identity")
