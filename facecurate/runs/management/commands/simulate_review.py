"""``manage.py simulate_review RUN [--max-actions N]``: let the simulated annotator work a run's queue under
each queue order (the run must have ground truth: started with truth_from_folders, and no review yet),
store the quality curves in the run's metrics (the run's report page draws them), then put the run back
as it was computed."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from facecurate.accounts.roles import create_user
from facecurate.runs.models import PipelineRun
from facecurate.runs.services.simulate import ORDERS, Annotator, Quality, reset_review

POINTS = 200


def _decimate(xs: list[float]) -> list[list[float]]:
    step = max(1, len(xs) // POINTS)
    idx = list(range(0, len(xs), step)) + ([len(xs) - 1] if (len(xs) - 1) % step else [])
    return [[i, round(xs[i], 5)] for i in idx]


class Command(BaseCommand):
    help = "Simulate an annotator on a run with ground truth and store the quality curves in its report."

    def add_arguments(self, parser):
        parser.add_argument("run", type=int)
        parser.add_argument("--max-actions", type=int, default=500)

    def handle(self, *args, run, max_actions, **options):
        try:
            obj = PipelineRun.objects.get(pk=run)
        except PipelineRun.DoesNotExist:
            raise CommandError(f"no run {run}") from None
        if not obj.options.get("truth_from_folders"):
            raise CommandError("the run has no ground truth (start it with truth_from_folders)")
        if obj.review_actions.exclude(user__username="simulated-annotator").exists():
            raise CommandError("people have reviewed this run; the simulation would reset their decisions")
        user, _ = create_user("simulated-annotator", role="annotator", token=False)
        quality = Quality(obj)
        curves, summaries = {}, {}
        for order in ORDERS:
            reset_review(obj)
            trace = Annotator(obj, user, quality, max_actions=max_actions).work(order)
            curves[order] = _decimate(trace.pairwise_f)
            summaries[order] = trace.summary((0.99,))
            self.stdout.write(f"{order}: {summaries[order]}")
        reset_review(obj)
        obj.refresh_from_db()
        obj.metrics = {**obj.metrics, "simulated_review": {"max_actions": max_actions, "curves": curves,
                                                           "summaries": summaries}}
        obj.save(update_fields=["metrics"])
