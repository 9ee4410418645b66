"""A clustering method's settings are checked against each parameter's declared type and range before a run
starts (pipeline/clustering/params.py)."""
from __future__ import annotations

import pytest

from pipeline.clustering.methods import METHODS
from pipeline.clustering.params import check_params


def test_every_methods_defaults_pass_their_own_check():
    for name, method in METHODS.items():
        assert check_params(method.func, {k: v for k, v in method.defaults.items()}) == [], name


@pytest.mark.parametrize("params, says", [
    ({"shrink": -1.0}, "shrink must be at least 0"),
    ({"k": 0}, "k must be between 1 and 1000"),
    ({"k": 2.5}, "k must be a whole number"),
    ({"threshold": "high"}, "threshold must be a number"),
    ({"threshold": float("nan")}, "threshold must be a number"),
    ({"num_trials": True}, "num_trials must be a number"),
    ({"whiten": 1}, "no setting whiten"),
])
def test_a_bad_value_is_refused_with_why(params, says):
    errors = check_params(METHODS["infomap-wccn"].func, params)
    assert len(errors) == 1 and says in errors[0], errors


def test_a_good_value_passes_and_none_only_where_the_setting_allows_it():
    assert check_params(METHODS["infomap-wccn"].func, {"shrink": 0.3, "k": 20.0, "threshold": 1}) == []
    assert check_params(METHODS["fces"].func, {"attach_sim": None, "early_stop": False}) == []
    assert "needs a value" in check_params(METHODS["fces"].func, {"tau": None})[0]
    assert "true or false" in check_params(METHODS["fces"].func, {"early_stop": 1})[0]
