"""A trial, not shipped: fit the merge model on the pairs the queue meets while review goes on, not only
on the clusters as the clusterer left them. The shipped queue is replayed (bench/review_queue_replay.py)
on the merge model's training sets (bench/merge_queue.py SETS); every EVERY actions each open candidate
pair is recorded with its features on the clusters as they are then and its label (same majority
person); rows repeated unchanged are kept once. The L2 strength is chosen on the same inner split of
identities as the shipped fit, and the floor by the same rule. Training identities only.

    PYTHONPATH=. .venv/bin/python -m bench.review_policy_pairs OUT.json [--with-initial]
    PYTHONPATH=. .venv/bin/python -m bench.review_queue_replay lfw16_train --merge_model=OUT.json
"""
from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import numpy as np

from bench.merge_queue import FLOOR_LOST, SETS, clustered, pair_data
from bench.review_queue_replay import Replay
from pipeline.review import merge_model
from pipeline.review.candidates import FEATURES
from pipeline.review.gain import probability_floor

EVERY, MAX_ACTIONS, STOP_F = 10, 700, 0.995


def review_pairs(d: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, same, inner) of the open candidate pairs met every EVERY actions of a replay."""
    r, xs, ys, persons = Replay(d), [], [], []
    while len(r.f) - 1 < MAX_ACTIONS and r.f[-1] < STOP_F:
        if (len(r.f) - 1) % EVERY == 0:
            live = r.sizes()
            keys = list(r.pair_probabilities(live, 0.0))
            if keys:
                xs.append(r.features(live, keys))
                maj = [(r.majority(a)[0], r.majority(b)[0]) for a, b in keys]
                ys += [float(x == y) for x, y in maj]
                persons += [x for x, _ in maj]
        items = r.items()
        if not items:
            break
        r.take(items[0])
    x, y = np.concatenate(xs), np.array(ys)
    _, keep = np.unique(np.round(np.c_[x, y], 4), axis=0, return_index=True)
    keep = np.sort(keep)
    names = np.unique(d["people"])[np.array(persons)[keep]]
    return x[keep], y[keep], np.array([zlib.crc32(str(n).encode()) % 2 == 1 for n in names])


def main(out: Path, with_initial: bool) -> None:
    parts = []
    for name in SETS:
        d = clustered(name)
        parts.append(review_pairs(d))
        print(name, "pairs met during review", len(parts[-1][1]), flush=True)
        if with_initial:
            parts.append(pair_data(d))
    x, y, inner = (np.concatenate(v) for v in zip(*parts))
    model, losses = merge_model.choose(x, y, inner)
    fixed = np.exp(x[:, FEATURES.index("log_small")] + x[:, FEATURES.index("log_large")])  # |A||B|, a yes's pairs
    model["p_min"] = probability_floor(merge_model.predict(model, x), y, fixed, FLOOR_LOST)
    model["trained_on"] = {"sets": list(SETS), "pairs": int(len(y)), "same": int(y.sum()), "with_initial": with_initial,
                           "inner_log_loss": {str(k): v for k, v in losses.items()}, "trial": "review_policy_pairs"}
    out.write_text(json.dumps(model, indent=1) + "\n")
    print(json.dumps(model["trained_on"], indent=1), "p_min", model["p_min"])


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--with-initial" in sys.argv)
