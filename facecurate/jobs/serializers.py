from rest_framework import serializers

from .models import Job


class JobSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="job-detail")
    dataset = serializers.PrimaryKeyRelatedField(read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    silent_seconds = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id", "url", "kind", "state", "stage", "progress_current", "progress_total", "progress",
            "progress_info", "error", "params", "result", "dataset", "created_by", "attempts", "cancel_requested",
            "heartbeat_at", "silent_seconds", "recoveries", "events", "created_at", "started_at", "finished_at", "updated_at",
        ]
        read_only_fields = fields

    def get_progress(self, job: Job) -> float | None:
        """Fraction done in the current stage, 0..1; null while the total is unknown."""
        if job.state == Job.State.SUCCEEDED:
            return 1.0
        if not job.progress_total:
            return None
        return min(1.0, job.progress_current / job.progress_total)

    def get_error(self, job: Job) -> str:
        """Why the job failed. The traceback under the first line is for staff only (it names code and
        paths of the server); annotators see the message."""
        from facecurate.accounts.roles import is_staff_role

        request = self.context.get("request")
        if not job.error or (request is not None and is_staff_role(request.user)):
            return job.error
        return job.error.split("\n", 1)[0]

    def get_silent_seconds(self, job: Job) -> float | None:
        """Seconds since the worker holding this running job last beat, once that is more than three
        heartbeats (it may have stopped: the sweeper requeues it after FACECURATE_JOB_STALE_SECONDS);
        null otherwise, also while the job waits for its sub-tasks (no worker holds it)."""
        from django.conf import settings
        from django.utils import timezone

        if job.state != Job.State.RUNNING or not job.worker or job.heartbeat_at is None:
            return None
        silent = (timezone.now() - job.heartbeat_at).total_seconds()
        return round(silent, 1) if silent > 3 * settings.JOB_HEARTBEAT_SECONDS else None
