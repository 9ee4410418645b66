"""``manage.py simulate_review RUN [--order O ...] [--targets F ...] [--passes N] [--max-actions N] [--stop-at F] [--json]``:
let the simulated annotator work a run's review under each queue order (the run must have ground truth:
started with truth_from_folders, and no review by people yet), compute the perfect greedy annotator's
bound on the same run, store the quality curves in the run's metrics (the run's report page draws
them), say for each order why it stopped, then put the run back as it was computed."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from facecurate.accounts.roles import create_user
from facecurate.runs.models import PipelineRun
from facecurate.runs.services.simulate import ORDERS, Annotator, Quality, oracle_curve, reset_review

POINTS = 200


def _decimate(xs: list[float]) -> list[list[float]]:
    step = max(1, len(xs) // POINTS)
    idx = list(range(0, len(xs), step)) + ([len(xs) - 1] if (len(xs) - 1) % step else [])
    return [[i, round(xs[i], 5)] for i in idx]


def _first(xs: list[float], t: float) -> int | None:
    return next((i for i, f in enumerate(xs) if f >= t), None)


class Command(BaseCommand):
    help = "Simulate an annotator on a run with ground truth and store the quality curves in its report."

    def add_arguments(self, parser):
        parser.add_argument("run", type=int)
        parser.add_argument("--max-actions", type=int, default=500)
        parser.add_argument("--order", nargs="+", choices=ORDERS, default=list(ORDERS))
        parser.add_argument("--targets", nargs="+", type=float, default=[0.95, 0.99])
        parser.add_argument("--stop-at", type=float, default=None,
                            help="stop each order once pairwise F reaches this (stopped: target)")
        parser.add_argument("--passes", type=int, default=1, help="walks of the cluster orders (default 1)")
        parser.add_argument("--json", action="store_true", help="print the summaries as one JSON object")

    def handle(self, *args, run, max_actions, order, targets, passes, json: bool = False, stop_at=None, **options):
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
        for name in order:
            reset_review(obj)
            trace = Annotator(obj, user, quality, max_actions=max_actions).work(name, passes=passes, target=stop_at)
            curves[name] = _decimate(trace.pairwise_f)
            summaries[name] = trace.summary(tuple(targets))
            if not json:
                self.stdout.write(f"{name}: stopped ({trace.stopped}) after {len(trace.actions)} actions, "
                                  f"F {trace.pairwise_f[0]:.4f} -> {trace.pairwise_f[-1]:.4f}; {summaries[name]}")
        reset_review(obj)
        # oracle: the person's clean-up (strays of one person split off together); oracle_reject: every
        # stray a singleton (the first oracle)
        for key, split in (("oracle", True), ("oracle_reject", False)):
            oracle = oracle_curve(quality, max_actions, target=stop_at, split=split)
            summaries[key] = {"order": key, "actions": len(oracle) - 1, "final_pairwise_f": oracle[-1],
                              **{f"actions_to_pairwise_f_{t}": _first(oracle, t) for t in targets}}
            curves[key] = _decimate(oracle)
        obj.refresh_from_db()
        result = {"max_actions": max_actions, "passes": passes, "targets": targets, "curves": curves,
                  "summaries": summaries}
        obj.metrics = {**obj.metrics, "simulated_review": result}
        obj.save(update_fields=["metrics"])
        if json:
            self.stdout.write(_dumps({"run": obj.pk, "summaries": summaries}))
        else:
            self.stdout.write(f"oracle: {summaries['oracle']}\noracle_reject: {summaries['oracle_reject']}")


def _dumps(x) -> str:
    return json.dumps(x, indent=1)
