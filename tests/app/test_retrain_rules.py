"""The retraining set gathered from the DB follows the review rules (no training, no worker)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.app.retrain_fixtures import finished_run, labeled_lfw, unlabeled_glint

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewed(staff_user):
    from facecurate.runs.models import Cluster, RunFace

    labeled, _ = labeled_lfw()
    unl, faces, rows = unlabeled_glint()
    run, labels, p = finished_run(unl, faces, rows, labeled, user=staff_user)
    cl = list(Cluster.objects.filter(run=run).order_by("number"))
    assert len(cl) >= 5, "infomap should find the 5 glint people"
    confirmed, edited, assigned, dismissed = cl[0], cl[1], cl[2], cl[3]
    Cluster.objects.filter(pk=confirmed.pk).update(review_state="confirmed")
    Cluster.objects.filter(pk=dismissed.pk).update(review_state="dismissed")
    members = list(RunFace.objects.filter(cluster=edited).order_by("id"))
    RunFace.objects.filter(pk=members[0].pk).update(excluded="rejected")
    RunFace.objects.filter(pk=members[1].pk).update(excluded="not_a_face")
    RunFace.objects.filter(pk=members[2].pk).update(cluster=confirmed)  # moved by a reviewer
    lonely = RunFace.objects.filter(cluster=cl[4]).order_by("id").first()
    RunFace.objects.filter(pk=lonely.pk).update(cluster=None)  # taken out, left unclustered
    return dict(run=run, labeled=labeled, confirmed=confirmed, edited=edited, assigned=assigned, dismissed=dismissed,
                moved=members[2].face_id, excluded={members[0].face_id, members[1].face_id}, lonely=lonely.face_id)


def test_gathered_training_set_follows_the_review_rules(reviewed):
    from facecurate.datasets.models import Face
    from facecurate.recognition.services.retrain import check_options, class_keys, gather, training_set
    from facecurate.runs.models import Cluster, RunFace

    r = reviewed
    opts = check_options({"holdout_fraction": 0.25, "gamma": 2.0})
    # pick an identity that is not held out for the assignment
    held = set(gather([r["labeled"].pk], [r["run"].pk], opts).report["held_out"]["identities"])
    target = Face.objects.filter(dataset=r["labeled"]).exclude(identity_id__in=held).first().identity_id
    Cluster.objects.filter(pk=r["assigned"].pk).update(assigned_identity_id=target)

    g = gather([r["labeled"].pk], [r["run"].pk], opts)
    ts, face_ids, report = training_set(g, opts)
    keys = np.asarray(class_keys(ts))[ts.class_index]
    by_face = {int(f): (k, float(w), s) for f, k, w, s in zip(face_ids, keys, ts.weight, ts.source)}

    assert len(held) == 2 and report["held_out"]["faces"] == 12
    held_faces = set(Face.objects.filter(identity_id__in=held).values_list("id", flat=True))
    assert not held_faces & set(by_face), "no training row may use a held-out identity"
    assert report["labeled_faces"] == 36 and report["labeled_classes"] == 6

    assert not r["excluded"] & set(by_face)
    assert report["left_out_before_rules"]["excluded_by_reviewer"] == 2
    dismissed_faces = set(RunFace.objects.filter(cluster=r["dismissed"]).values_list("face_id", flat=True))
    assert dismissed_faces and not dismissed_faces & set(by_face)
    assert report["left_out_before_rules"]["cluster_dismissed"] == len(dismissed_faces)
    assert r["lonely"] not in by_face and report["dropped"]["unclustered"] == 1

    conf_key = f"run-{r['run'].pk}-cluster-{r['confirmed'].pk}"
    conf_faces = set(RunFace.objects.filter(cluster=r["confirmed"]).values_list("face_id", flat=True))
    assert r["moved"] in conf_faces
    for f in conf_faces:
        assert by_face[f][0] == conf_key and by_face[f][1] == 1.0  # confirmed: p- = 0, weight 1
    for f in RunFace.objects.filter(cluster=r["assigned"]).values_list("face_id", flat=True):
        assert by_face[f][0] == f"identity-{target}" and by_face[f][2] == "pseudo"
    p = dict(RunFace.objects.filter(run=r["run"]).values_list("face_id", "p_minus"))
    edited = RunFace.objects.filter(cluster=r["edited"], excluded="").values_list("face_id", flat=True)
    assert len(edited) >= 2
    for f in edited:  # soft weight (1 - p-)^gamma of an unreviewed cluster
        assert by_face[f][0] == f"run-{r['run'].pk}-cluster-{r['edited'].pk}"
        assert by_face[f][1] == pytest.approx((1 - p[f]) ** 2.0, abs=1e-6)
    assert report["clusters"]["confirmed"] == 1 and report["clusters"]["joined_labeled"] == 1

    hard, _, _ = training_set(g, check_options({"holdout_fraction": 0.25, "weighting": "hard"}))
    assert (hard.weight == 1).all() and len(hard) == len(ts)
    capped, _, rep = training_set(g, check_options({"holdout_fraction": 0.25, "max_faces_per_cluster": 3}))
    assert rep["dropped"]["cluster_capped"] > 0 and np.bincount(capped.class_index[capped.source == "pseudo"]).max() <= 3


def test_input_hash_changes_with_review_and_settings(reviewed):
    from facecurate.recognition.services.retrain import check_options, gather, input_hash, training_set
    from facecurate.recognition.services.versions import active_version
    from facecurate.runs.models import RunFace

    r, parent = reviewed, active_version()
    opts = check_options({"holdout_fraction": 0.25})

    def digest(o):
        ts, ids, _ = training_set(gather([r["labeled"].pk], [r["run"].pk], o), o)
        return input_hash(parent, ts, ids, o)

    first = digest(opts)
    assert digest(opts) == first
    assert digest({**opts, "lfw_pairs": False}) == first  # evaluation only, not an input
    assert digest({**opts, "epochs": 7}) != first
    RunFace.objects.filter(pk=RunFace.objects.filter(cluster=r["edited"], excluded="").first().pk).update(
        excluded="rejected")  # a reviewer's change is a new input
    assert digest(opts) != first


def test_bad_requests_are_refused(staff_client, annotator_client, staff_user):
    labeled, _ = labeled_lfw(per_person=2)
    body = {"labeled_datasets": [labeled.pk], "weighting": "soft"}
    assert annotator_client.post("/api/retrainings/", body, format="json").status_code == 403
    bad = staff_client.post("/api/retrainings/", {**body, "weighting": "medium"}, format="json")
    assert bad.status_code == 400 and "weighting" in bad.json()
    unl, faces, emb = unlabeled_glint(per_person=2)
    resp = staff_client.post("/api/retrainings/", {**body, "labeled_datasets": [unl.pk]}, format="json")
    assert resp.status_code == 400 and "not labeled" in resp.json()["detail"]
    resp = staff_client.post("/api/retrainings/", {**body, "backbone": "sface", "trainable_blocks": 16}, format="json")
    assert resp.status_code == 400


def test_promotion_is_staff_only_and_keeps_one_active(staff_client, annotator_client):
    from facecurate.recognition.models import RecognizerVersion
    from facecurate.recognition.services.versions import active_version

    base = active_version()
    a = RecognizerVersion.objects.create(name="a", kind="checkpoint", path="checkpoints/a.pt", parent=base)
    b = RecognizerVersion.objects.create(name="b", kind="checkpoint", path="checkpoints/b.pt", parent=a)
    assert annotator_client.post(f"/api/recognizers/{a.pk}/promote/").status_code == 403
    assert RecognizerVersion.objects.get(is_active=True) == base
    for v in (a, b, a):
        resp = staff_client.post(f"/api/recognizers/{v.pk}/promote/")
        assert resp.status_code == 200 and resp.json()["is_active"] is True
        assert list(RecognizerVersion.objects.filter(is_active=True).values_list("pk", flat=True)) == [v.pk]
    assert annotator_client.get(f"/api/recognizers/{b.pk}/").json()["is_active"] is False
    resp = annotator_client.get(f"/api/recognizers/{b.pk}/compare/")
    assert resp.status_code == 409 and resp.json()["code"] == "not_compared"


def test_retrain_page_and_admin_form(staff_user, annotator_user):
    from django.test import Client

    from facecurate.jobs.models import Job
    from facecurate.recognition.services.versions import active_version

    staff, annotator = Client(), Client()
    staff.force_login(staff_user)
    annotator.force_login(annotator_user)
    page = staff.get("/retrain/")
    assert page.status_code == 200 and b'id="retrain-form"' in page.content and b"retrain.js" in page.content
    page = annotator.get("/retrain/")
    assert page.status_code == 200 and b'id="retrain-form"' not in page.content
    assert b'href="/retrain/"' in staff.get("/").content

    staff_user.is_staff = True  # the Django admin needs is_staff
    staff_user.save()
    form = staff.get(f"/admin/recognition/recognizerversion/retrain/?parent={active_version().pk}")
    assert form.status_code == 200 and b"labeled_datasets" in form.content
    labeled, _ = labeled_lfw(per_person=2)
    resp = staff.post("/admin/recognition/recognizerversion/retrain/", {
        "parent": active_version().pk, "labeled_datasets": [labeled.pk], "weighting": "hard", "gamma": 1,
        "overlap": "discard", "min_cluster_size": 2, "max_faces_per_cluster": 50, "holdout_fraction": 0.2,
        "backbone": "sface", "trainable_blocks": 1, "epochs": 1, "batch_size": 8})
    assert resp.status_code == 302, resp.content[:2000]
    job = Job.objects.get(kind="retrain")
    assert job.params["options"]["weighting"] == "hard" and job.params["labeled"] == [labeled.pk]
    assert job.params["options"]["trainable_blocks"] == 1 and job.state == "queued"
