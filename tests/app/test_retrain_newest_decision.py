"""A retraining over two runs of one dataset: one face, one class, the newest decision (no training)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.app.decision_fixtures import decision_world, new_run

pytestmark = pytest.mark.slow


def test_two_runs_give_each_face_one_class_from_its_newest_decision(db):
    from facecurate.recognition.services.retrain import check_options, class_keys, gather, training_set
    from facecurate.runs.models import Cluster, RunFace
    from facecurate.runs.services import review

    user, unl, lab, idents = decision_world()
    r1 = new_run(user, unl, lab)
    a, b = Cluster.objects.filter(run=r1, size__gte=3).order_by("id")[:2]
    review.confirm(user, a.pk, a.version, name="Ann Lee")
    review.confirm(user, b.pk, b.version)
    r2 = new_run(user, unl, lab)
    a2, b2 = Cluster.objects.get(run=r2, carried_from=a), Cluster.objects.get(run=r2, carried_from=b)
    out = RunFace.objects.filter(cluster=a2).order_by("id").first()
    review.reject(user, a2.pk, a2.version, [out.pk])  # newer than run 1's confirmation
    review.assign(user, b2.pk, b2.version, idents[0].pk)  # b's faces join a labeled person's class

    opts = check_options({"holdout_fraction": 0.0, "min_cluster_size": 1})
    ts, face_ids, report = training_set(gather([lab.pk], [r1.pk, r2.pk], opts), opts)
    keys = np.asarray(class_keys(ts))[ts.class_index]
    assert report["faces_used_twice"] == 0
    classes: dict[int, set] = {}
    for f, k in zip(face_ids.tolist(), keys.tolist()):
        classes.setdefault(f, set()).add(k)
    assert out.face_id not in classes, "rejected in run 2: left out, though run 1 confirmed it"
    for f in RunFace.objects.filter(cluster=a2).values_list("face_id", flat=True):
        assert classes[f] == {f"run-{r2.pk}-cluster-{a2.pk}"}
    for f in RunFace.objects.filter(cluster=b2).values_list("face_id", flat=True):
        assert classes[f] == {f"identity-{idents[0].pk}"}
    assert report["same_face_rows_dropped"] == RunFace.objects.filter(run=r1).count()
