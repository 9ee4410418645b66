"""``manage.py requeuejobs [--older-than SECONDS] [--dry-run]``: send again the jobs whose message was lost.

A job stays ``queued`` if the web process died between committing it and sending its task, or if the
broker lost the message. Every worker's sweeper does this on its own after ``JOB_RESEND_SECONDS``; the
command does it now. Re-sending is safe: a job that already ran is skipped by the worker, and one that
ran halfway resumes without duplicates.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand

from facecurate.jobs.runner import lost_messages, resend_lost_jobs


class Command(BaseCommand):
    help = "Re-send the Celery task of jobs that have been queued for too long."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=600, help="seconds queued (default 600)")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, older_than, dry_run, **options):
        if dry_run:
            jobs = lost_messages(older_than)
            for job in jobs:
                self.stdout.write(f"would re-send {job.kind} {job.id}")
            self.stdout.write(f"{len(jobs)} job(s)")
            return
        sent = resend_lost_jobs(older_than)
        for pk in sent:
            self.stdout.write(f"re-sent {pk}")
        self.stdout.write(f"{len(sent)} job(s)")
