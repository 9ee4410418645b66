"""The retraining page's form starts from the product's defaults (one source: the recipe behind
``retrain.DEFAULTS``), not from numbers typed into the template: the page showed gamma 1 after the
recipe's default became 2."""
from __future__ import annotations

import re

from facecurate.recognition.services.retrain import DEFAULTS, GUARD_DEFAULTS


def _value(html: str, name: str) -> str:
    m = re.search(r'<input name="%s"[^>]*value="([^"]*)"' % name, html)
    assert m, f"no input {name} on the page"
    return m.group(1)


def test_form_shows_the_defaults(staff_user):
    from django.test import Client

    staff = Client()
    staff.force_login(staff_user)
    html = staff.get("/retrain/").content.decode()
    for name in ("gamma", "min_cluster_size", "max_faces_per_cluster", "holdout_fraction", "trainable_blocks",
                 "epochs", "batch_size"):
        assert float(_value(html, name)) == float(DEFAULTS[name]), name
    assert float(_value(html, "pseudo_holdout_fraction")) == float(GUARD_DEFAULTS["pseudo_holdout_fraction"])
