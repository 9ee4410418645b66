"""The retraining page: start a retraining (staff), follow its job, compare versions (ROC as inline SVG)."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from facecurate.accounts.roles import is_annotator, is_staff_role, role_of
from facecurate.recognition.services.retrain import DEFAULTS, GUARD_DEFAULTS


@login_required
def retrain_page(request):
    if not is_annotator(request.user):
        return render(request, "facecurate/no_role.html", status=403)
    return render(request, "facecurate/retrain.html",
                  {"role": role_of(request.user), "can_retrain": is_staff_role(request.user),
                   "defaults": {**DEFAULTS, **GUARD_DEFAULTS}})
