"""Review planning (pure NumPy, no Django): which pairs of clusters to ask "same person?" about, the
calibrated probability that they are one identity, and the expected pairwise errors each review item
fixes (the recall-aware priority), plus the perfect greedy annotator that bounds what review can reach.

- :mod:`pipeline.review.candidates`: candidate pairs from a centroid kNN, and their features.
- :mod:`pipeline.review.merge_model`: a small logistic model of P(same identity | pair features),
  coefficients in ``merge_model.json`` (written by ``bench/merge_queue.py``).
- :mod:`pipeline.review.stray_model`: p- read as P(a face is a stray in its cluster), for clean-up gains,
  coefficients in ``stray_model.json`` (written by ``bench/merge_queue.py``).
- :mod:`pipeline.review.logistic`: the small logistic regression both models are fitted with.
- :mod:`pipeline.review.gain`: expected pairwise errors fixed per action (merges and clean-ups).
- :mod:`pipeline.review.oracle`: the perfect greedy annotator (best merge or clean-up each step).
"""
