"""Admin: recognizer versions, and a form to start a retraining from a selected version (staff role)."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import path, reverse

from facecurate.accounts.roles import is_staff_role
from facecurate.datasets.models import Dataset

from .models import Artifact, RecognizerVersion
from .services.retrain import DEFAULTS, RetrainRequestError, start_retraining


class RetrainForm(forms.Form):
    parent = forms.ModelChoiceField(RecognizerVersion.objects.all())
    labeled_datasets = forms.ModelMultipleChoiceField(Dataset.objects.filter(kind="labeled"))
    runs = forms.ModelMultipleChoiceField(queryset=None, required=False)
    weighting = forms.ChoiceField(choices=[("soft", "soft (1 - p-)^gamma"), ("hard", "hard")], initial="soft")
    gamma = forms.FloatField(initial=DEFAULTS["gamma"], min_value=0)
    overlap = forms.ChoiceField(choices=[("discard", "discard"), ("add_to_predicted", "add to predicted identity")])
    min_cluster_size = forms.IntegerField(initial=DEFAULTS["min_cluster_size"], min_value=1)
    max_faces_per_cluster = forms.IntegerField(initial=DEFAULTS["max_faces_per_cluster"], min_value=1, required=False)
    holdout_fraction = forms.FloatField(initial=DEFAULTS["holdout_fraction"], min_value=0, max_value=0.9)
    backbone = forms.ChoiceField(choices=[("sface", "SFace fine-tune"), ("mobilefacenet", "MobileFaceNet from scratch")])
    trainable_blocks = forms.IntegerField(initial=DEFAULTS["trainable_blocks"], min_value=1, max_value=15, required=False)
    epochs = forms.IntegerField(initial=DEFAULTS["epochs"], min_value=1)
    lr = forms.FloatField(required=False)
    batch_size = forms.IntegerField(initial=DEFAULTS["batch_size"], min_value=2)
    lowres_copies = forms.BooleanField(initial=DEFAULTS["lowres_copies"], required=False,
                                       label="Low-resolution copies of the labeled faces")
    lfw_pairs = forms.BooleanField(initial=True, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from facecurate.runs.models import PipelineRun

        self.fields["runs"].queryset = PipelineRun.objects.all()


@admin.register(RecognizerVersion)
class RecognizerVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "kind", "parent", "state", "verdict", "is_active", "created_at")
    list_filter = ("state", "verdict")
    readonly_fields = [f.name for f in RecognizerVersion._meta.fields]
    actions = ["retrain_from"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Start a retraining from the selected version")
    def retrain_from(self, request, queryset):
        version = queryset.first()
        return redirect(reverse("admin:recognition_retrain") + f"?parent={version.pk}")

    def get_urls(self):
        return [path("retrain/", self.admin_site.admin_view(self.retrain_view), name="recognition_retrain"),
                *super().get_urls()]

    def retrain_view(self, request):
        if not is_staff_role(request.user):
            raise PermissionDenied
        form = RetrainForm(request.POST or None, initial={"parent": request.GET.get("parent")})
        if request.method == "POST" and form.is_valid():
            d = form.cleaned_data
            options = {k: d[k] for k in DEFAULTS if k in d}
            try:
                job = start_retraining(request.user, d["parent"], list(d["labeled_datasets"]), list(d["runs"]), options)
            except RetrainRequestError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Retraining queued: job {job.pk}")
                return redirect(reverse("admin:jobs_job_change", args=[job.pk]))
        return render(request, "admin/recognition/retrain.html",
                      {**self.admin_site.each_context(request), "form": form, "title": "Start a retraining"})


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ("id", "path", "kind", "size_bytes", "created_at")
    list_filter = ("kind",)
    readonly_fields = [f.name for f in Artifact._meta.fields]
