"""``manage.py requeuejobs [--older-than SECONDS]``: send again the jobs whose message was lost.

A job stays ``queued`` if the web process died between committing it and sending its task, or
if the broker lost the message. Re-sending is safe: a job that already ran is skipped by the
worker, and one that ran halfway resumes without duplicates.
"""
from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from facecurate.jobs.models import KIND_TASKS, Job


class Command(BaseCommand):
    help = "Re-send the Celery task of jobs that have been queued for too long."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=600, help="seconds queued (default 600)")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, older_than, dry_run, **options):
        cutoff = timezone.now() - timedelta(seconds=older_than)
        stale = Job.objects.filter(state=Job.State.QUEUED, updated_at__lt=cutoff, kind__in=list(KIND_TASKS))
        count = 0
        for job in stale:
            if (job.params or {}).get("receiving"):  # an upload still storing its files is not lost (see the sweeper)
                continue
            count += 1
            self.stdout.write(f"{'would re-send' if dry_run else 're-sending'} {job.kind} {job.id}")
            if not dry_run:
                with transaction.atomic():
                    job.enqueue()
        self.stdout.write(f"{count} job(s)")
