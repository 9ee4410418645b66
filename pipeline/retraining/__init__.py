"""Step 7 of the paper: labeled plus pseudo-labeled faces as one weighted training set.

| module | what |
| --- | --- |
| ``training_set`` | classes, rows and (1 - p-)^gamma weights from labeled faces and clusters (``build_training_set``) |
| ``split_people`` | one person in several clusters: close-class masks and cluster merging by centroid cosine |
| ``recipe`` | the default retraining settings (``DEFAULT_RECIPE``), chosen on bench/retrain_domain.py's val people |
"""
from pipeline._lazy import lazy_exports

__all__ = ["build_training_set", "RetrainConfig", "TrainingSet", "UnlabeledFaces"]
__getattr__, __dir__ = lazy_exports(__name__, {name: "training_set" for name in __all__})
