"""Cancel and re-run, compare-and-set against the worker's own state changes."""
from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import KIND_TASKS, Job
from .runner import add_event


class JobConflict(Exception):
    """The job is in a state that does not allow this (the message says which)."""


#: kind -> ``guard(job)``, called under the job's row lock before a re-run is queued: raises JobConflict
#: (with the reason) when the job may not run now. Registered by the apps that own the rules (an ingestion
#: is refused while a run uses its dataset; a run while an ingestion of its datasets is unfinished).
RERUN_GUARDS: dict[str, Callable[[Job], None]] = {}


def cancel_job(job_id, user=None) -> Job:
    """A queued job, or a running one that no worker holds (waiting for sub-tasks), ends cancelled
    at once; a running job is asked to stop and does so at its next check. A cancel that arrives while
    the worker finishes is not lost: the worker's success only lands if no cancel was asked for."""
    now = timezone.now()
    who = getattr(user, "username", None)
    if Job.cas(Q(pk=job_id), Job.State.QUEUED, Job.State.CANCELLED, finished_at=now, cancel_requested=True,
               updated_at=now):
        add_event(job_id, "cancelled while queued", by=who)
    elif Job.cas(Q(pk=job_id, worker=""), Job.State.RUNNING, Job.State.CANCELLED, finished_at=now,
                 cancel_requested=True, updated_at=now):
        add_event(job_id, "cancelled while waiting for sub-tasks", by=who)
    elif Job.objects.filter(pk=job_id, state=Job.State.RUNNING).update(cancel_requested=True, updated_at=now):
        add_event(job_id, "cancel requested", by=who)
    else:
        raise JobConflict(f"job is {Job.objects.get(pk=job_id).state}")
    return Job.objects.get(pk=job_id)


def rerun_job(job_id, user=None) -> Job:
    """Queue a failed or cancelled job again; it resumes where it stopped (no duplicates)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.state not in (Job.State.FAILED, Job.State.CANCELLED) or job.kind not in KIND_TASKS:
            raise JobConflict(f"a {job.state} job cannot be re-run")
        guard = RERUN_GUARDS.get(job.kind)
        if guard is not None:
            guard(job)
        job.transition(Job.State.QUEUED)
        job.worker = ""
        job.save(update_fields=["worker"])
        add_event(job_id, "re-run", by=getattr(user, "username", None))
        job.enqueue()
        # Read before the commit sends the task: the answer says "queued", as this request left it, even
        # when a worker claims the job before the response is written.
        return Job.objects.get(pk=job_id)
