"""Recognizer benchmarks: LFW pairs, TAR at FAR, identification (``evaluate_features``, ``lfw_verification``)."""
from pipeline._lazy import lazy_exports

__all__ = ["read_lfw_pairs", "lfw_verification", "tar_at_far", "identification", "evaluate_features",
           "compare_reports", "write_report"]
__getattr__, __dir__ = lazy_exports(__name__, {name: "verification" for name in __all__})
