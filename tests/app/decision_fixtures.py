"""A small dataset with its embeddings (att people s1-s7, 70 faces) and a labeled one (s30-s32), and
pipeline runs of it whose stages run in-process (no worker): for tests of decisions across runs."""
from __future__ import annotations

from tests.app.conftest import make_user
from tests.app.run_fixtures import featured_dataset, rows_of


def decision_world():
    """(annotator, unlabeled dataset, labeled dataset, the labeled identities)."""
    from facecurate.datasets.models import Identity

    user = make_user("rita", "annotator")[0]
    unl = featured_dataset("att-decisions", "att", rows_of("att", [f"s{i}" for i in range(1, 8)]), labeled=False)
    lab = featured_dataset("att-known", "att", rows_of("att", [f"s{i}" for i in range(30, 33)]), labeled=True)
    return user, unl, lab, list(Identity.objects.filter(dataset=lab).order_by("id"))


def new_run(user, unl, lab):
    """A run of ``unl`` started as the API starts one, its stages run here, its job marked succeeded."""
    from facecurate.jobs.models import Job
    from facecurate.runs.services.orchestrate import STAGE_FUNCS
    from facecurate.runs.services.start import start_run

    run = start_run(user, unl, [lab])
    for fn in STAGE_FUNCS.values():
        fn(None, run)
    Job.objects.filter(pk=run.job_id).update(state=Job.State.SUCCEEDED)
    run.stages = {s: {"state": "done"} for s in run.STAGES}
    run.save(update_fields=["stages"])
    return run
