"""``python -m pipeline``'s command groups, one module each with ``register(subparsers)``:
``recognizer`` (embed, train, evaluate), ``overlap`` (separate-overlap, uncertainty),
``clustering`` (knn, train-gcn, cluster, evaluate-clustering)."""
