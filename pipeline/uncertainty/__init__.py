"""Clustering uncertainty p- (paper Sec. 3.3): how likely each face is to be wrongly clustered.

- :mod:`.softmax`: softmax regression on the cluster assignments and per-face entropy / max-logit / margins;
- :mod:`.core`: :func:`clustering_uncertainty` (cross-fitting, p- by method, cluster priority) and the ground
  truth :func:`wrongly_clustered`;
- :mod:`.calibrated`: the calibrated p- (default) -- cluster geometry, the shipped logistic calibrator
  (``calibration.json``), the unsupervised mixture posterior;
- :mod:`.paper`: the paper's literal Otsu + Weibull p- (``PMinusConfig(method="paper")``);
- :mod:`.scores`: average precision, calibration tables, baseline scores, :func:`cluster_priority`.
"""
from pipeline.uncertainty.calibrated import (
    CALIBRATION_PATH,
    Calibrator,
    LogisticPart,
    cluster_geometry,
    fit_calibrator,
    fit_logistic,
    load_calibrator,
    mixture_p_minus,
)
from pipeline.uncertainty.core import DEFAULT_PRIORITY, UncertaintyResult, clustering_uncertainty, cross_fit_folds, wrongly_clustered
from pipeline.uncertainty.paper import MARGIN_LABELS, P_MINUS_METHODS, PMinusConfig, PMinusFit, fit_p_minus, p_margin
from pipeline.uncertainty.scores import (
    CALIBRATION_BINS,
    PRIORITY_RULES,
    ap_report,
    average_precision,
    baseline_scores,
    calibration_table,
    cluster_priority,
    cluster_truth,
    nearest_cluster_similarity,
    precision_recall,
)
from pipeline.uncertainty.softmax import SoftmaxConfig, SoftmaxModel, fit_softmax, softmax_scores

__all__ = [
    "SoftmaxConfig", "SoftmaxModel", "fit_softmax", "softmax_scores",
    "PMinusConfig", "PMinusFit", "fit_p_minus", "p_margin", "MARGIN_LABELS", "P_MINUS_METHODS",
    "UncertaintyResult", "clustering_uncertainty", "cross_fit_folds", "wrongly_clustered", "DEFAULT_PRIORITY",
    "CALIBRATION_PATH", "Calibrator", "LogisticPart", "cluster_geometry", "fit_calibrator", "fit_logistic",
    "load_calibrator", "mixture_p_minus",
    "CALIBRATION_BINS", "PRIORITY_RULES", "ap_report", "average_precision", "baseline_scores", "calibration_table",
    "cluster_priority", "cluster_truth", "nearest_cluster_similarity", "precision_recall",
]
