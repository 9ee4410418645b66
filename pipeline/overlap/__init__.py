"""Step 3 of the paper: which unlabeled faces belong to identities already labeled.

| module | what |
| --- | --- |
| ``evt`` | Otsu's threshold and the two-component Weibull mixture (``otsu``, ``fit_weibull_mixture``) |
| ``separation`` | max-logit scores to overlap / disjoint / rejected states (``separate_overlap``) |
| ``plots`` | the report's histogram with the fitted densities (``plot_report``) |
"""
from pipeline._lazy import lazy_exports

__all__ = ["otsu", "fit_weibull", "fit_weibull_mixture", "separate_overlap", "score_histogram", "plot_report"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "otsu": "evt", "fit_weibull": "evt", "fit_weibull_mixture": "evt",
    "separate_overlap": "separation", "score_histogram": "separation", "plot_report": "plots",
})
