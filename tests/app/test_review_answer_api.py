"""One decision on a review-queue item with partners, through the API (issue 16, item 1): a merge group
merges the ticked partners and records "not this person" for the rest; a rejected face joins the chosen
cluster or none; bad requests are refused with a reason and change nothing; undoing every action the
answer returned takes the decision back."""
from __future__ import annotations

from tests.app.test_merge_queue import _c, mq  # noqa: F401  (mq: a fixture)


def _url(run):
    return f"/api/runs/{run.pk}/review-answer/"


def _group(run, cluster, others, same):
    return {"cluster": cluster.pk, "version": cluster.version, "same": [o.pk for o in same],
            "others": [{"id": o.pk, "version": o.version} for o in others]}


def test_a_merge_group_merges_the_ticked_partners_and_says_no_to_the_rest(mq):  # noqa: F811
    from facecurate.runs.models import ReviewAction
    from tests.app.review_fixtures import assert_consistent

    run, c, h = mq["run"], mq["clusters"], mq["halves"]
    resp = mq["client"].post(_url(run), _group(run, c[0], [h[0], c[2], h[1]], [h[0]]), format="json")
    assert resp.status_code == 200, resp.content
    outs = resp.json()
    kinds = sorted(o["action"]["kind"] for o in outs)
    assert kinds == ["distinct", "distinct", "merge"]
    assert _c(c[0].pk).size == 12 and _c(h[0].pk).size == 0  # the ticked half came home
    assert _c(c[2].pk).size == 12 and _c(h[1].pk).size == 4  # the others untouched, recorded as other people
    assert ReviewAction.objects.filter(run=run, kind="distinct", cluster=c[0]).count() == 2
    assert_consistent(run)
    for o in reversed(outs):  # undo every action of the decision, last first
        assert mq["client"].post(f"/api/review-actions/{o['action']['id']}/undo/", {}, format="json").status_code == 200
    assert _c(c[0].pk).size == 7 and _c(h[0].pk).size == 5
    assert not ReviewAction.objects.filter(run=run, undone_at__isnull=True).exists()
    assert_consistent(run)


def test_a_rejected_face_joins_the_chosen_cluster_or_none(mq):  # noqa: F811
    from facecurate.runs.models import RunFace
    from facecurate.runs.services import review

    run, c, user = mq["run"], mq["clusters"], mq["user"]
    face = mq["outliers"][c[1].pk]
    review.reject(user, c[1].pk, c[1].version, [face])
    others = [{"id": x.pk, "version": _c(x.pk).version} for x in (c[2], c[3])]
    resp = mq["client"].post(_url(run), {"face": face, "others": others, "chosen": None}, format="json")
    assert resp.status_code == 200, resp.content
    assert RunFace.objects.get(pk=face).cluster_id is None and len(resp.json()) == 2
    others = [{"id": x.pk, "version": _c(x.pk).version} for x in (c[2], c[3])]
    resp = mq["client"].post(_url(run), {"face": face, "others": others, "chosen": c[3].pk}, format="json")
    assert resp.status_code == 200, resp.content
    assert RunFace.objects.get(pk=face).cluster_id == c[3].pk


def test_bad_answers_are_refused_with_a_reason_and_change_nothing(mq):  # noqa: F811
    from facecurate.runs.models import ReviewAction

    run, c, h = mq["run"], mq["clusters"], mq["halves"]
    post = lambda body: mq["client"].post(_url(run), body, format="json")  # noqa: E731
    others = [{"id": h[0].pk, "version": h[0].version}]
    cases = [
        ({"others": others, "same": []}, 400, "either cluster"),  # neither cluster nor face
        ({"cluster": c[0].pk, "face": 1, "version": 1, "others": others}, 400, "either cluster"),
        ({"cluster": c[0].pk, "others": others}, 400, "version"),
        ({**_group(run, c[0], [h[0]], []), "same": [c[3].pk]}, 400, "only partners"),
        ({**_group(run, c[0], [h[0]], []), "others": []}, 400, "others"),
        ({**_group(run, c[0], [h[0], h[0]], [])}, 400, "each partner once"),
        ({**_group(run, c[0], [c[0]], [])}, 400, "own partner"),
        ({**_group(run, c[0], [h[0]], []), "others": [{"id": 10**9, "version": 1}]}, 404, "no cluster"),
        ({**_group(run, c[0], [h[0]], [h[0]]), "version": c[0].version + 5}, 409, ""),
    ]
    for body, code, text in cases:
        resp = post(body)
        assert resp.status_code == code, (body, resp.content)
        assert text in resp.content.decode(), (body, resp.content)
    assert not ReviewAction.objects.filter(run=run).exists()
    assert _c(h[0].pk).size == 5
