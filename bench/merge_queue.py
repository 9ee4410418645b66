"""Fit the merge queue's model (pipeline/review/merge_model.json) on dev data and draw review curves.

Dev data: glint-sample (full resolution) and its 20 px and 16 px versions (bench/review_devsets.py).
Each set is clustered with the default method (Infomap), p- computed as the app computes it, and the
centroid-kNN candidate pairs labelled "same person" when their majority persons agree. The L2 strength
is chosen by log-loss on an inner split (the candidate pairs of half the people, by a hash of the
person's name), then the model is refitted on every pair.

    nice -n 10 .venv/bin/python -m bench.merge_queue fit
"""
from __future__ import annotations

import json
import sys
import zlib
from collections import Counter

import numpy as np

from bench import review_devsets
from pipeline.review import merge_model
from pipeline.review.candidates import FEATURES, cluster_pairs

SETS = ("glint", "glint20", "glint16")


def clustered(name: str) -> dict:
    from pipeline.clustering.methods import cluster
    from pipeline.uncertainty import clustering_uncertainty

    emb, people = review_devsets.load(name)
    truth = np.unique(people, return_inverse=True)[1]
    labels = cluster(emb, "infomap")
    p = clustering_uncertainty(emb, labels).p_minus
    return {"emb": emb, "people": people, "truth": truth, "labels": labels, "p": np.nan_to_num(p, nan=0.0)}


def majority(labels: np.ndarray, people: np.ndarray) -> dict[int, str]:
    out = {}
    for c in np.unique(labels[labels >= 0]):
        out[int(c)] = Counter(people[labels == c].tolist()).most_common(1)[0][0]
    return out


def pair_data(d: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pairs, feats = cluster_pairs(d["emb"], d["labels"], d["p"])
    maj = majority(d["labels"], d["people"])
    y = np.array([maj[a] == maj[b] for a, b in pairs.tolist()], np.float64)
    inner = np.array([zlib.crc32(maj[a].encode()) % 2 == 1 for a, _ in pairs.tolist()])
    return feats, y, inner


def fit() -> dict:
    xs, ys, inners, per_set = [], [], [], {}
    for name in SETS:
        d = clustered(name)
        x, y, inner = pair_data(d)
        xs.append(x), ys.append(y), inners.append(inner)
        per_set[name] = {"pairs": len(y), "same": int(y.sum()), "clusters": int(d["labels"].max() + 1)}
    x, y, inner = np.concatenate(xs), np.concatenate(ys), np.concatenate(inners)
    model, losses = merge_model.choose(x, y, inner)
    model["trained_on"] = {"sets": list(SETS), "pairs": int(len(y)), "same": int(y.sum()),
                           "inner_log_loss": {str(k): v for k, v in losses.items()}, "per_set": per_set,
                           "command": "python -m bench.merge_queue fit"}
    merge_model.MODEL_PATH.write_text(json.dumps(model, indent=1) + "\n")
    return model


if __name__ == "__main__":
    if sys.argv[1:2] == ["fit"]:
        print(json.dumps(fit(), indent=1))
