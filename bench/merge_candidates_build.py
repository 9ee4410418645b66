"""What the merge queue's first listing computes for a run (``merge_queue.build``), stage by stage, on
synthetic clustered faces: the candidate pairs with their features (``cluster_pairs``), each cluster's
nearest others (``nearest_others``), and, timed beside them, the step the build ran until stop 28 and
nothing read: every face's nearest clusters with their features (``face_placements`` over all faces). Since
stop 29 the build and every listing of the queue whiten the faces by the run's clusters first
(``merge_queue._whitened``): timed alone at ``--whiten-sizes`` (cheap enough to reach 1M).

    PYTHONPATH=. .venv/bin/python bench/merge_candidates_build.py [--sizes 20000 100000] [--whiten-sizes 1000000]
writes bench/results/merge_candidates_build.{json,md}.

Synthetic data as bench/clustering_speed.py draws it: identities with 1 + Geometric(0.1) faces (mean
10), 128-d, face = normalise(centre + 0.9 * g); the clusters are the identities; p- uniform on [0, 0.2].
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from pipeline.clustering.wccn import whiten, within_class_whitening  # noqa: E402
from pipeline.review.candidates import WHITEN_SHRINK, centroids, cluster_pairs, face_placements, nearest_others  # noqa: E402

DIM = 128


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = 1 + rng.geometric(0.1, size=n // 5)
    labels = np.repeat(np.arange(len(sizes)), sizes)[:n]
    centres = rng.standard_normal((len(sizes), DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    emb = centres[labels] + 0.9 * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.unique(labels, return_inverse=True)[1]
    return emb.astype(np.float32), labels, rng.uniform(0, 0.2, n)


def whitening(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    with harness.timed() as t:
        white = whiten(emb, within_class_whitening(emb, labels, WHITEN_SHRINK))
    return white, round(t.seconds, 2)


def measure_whitening(n: int) -> dict:
    emb, labels, _ = synthetic(n)
    _, seconds = whitening(emb, labels)
    return {"faces": n, "clusters": int(labels.max()) + 1, "whiten_s": seconds, "peak_rss_mib": harness.peak_rss_mib()}


def measure(n: int) -> dict:
    emb, labels, p = synthetic(n)
    k = int(labels.max()) + 1
    out = {"faces": n, "clusters": k}
    emb, out["whiten_s"] = whitening(emb, labels)
    with harness.timed() as t:
        pairs, _ = cluster_pairs(emb, labels, p)
    out["cluster_pairs_s"], out["pairs"] = round(t.seconds, 2), int(len(pairs))
    with harness.timed() as t:
        nearest_others(centroids(emb, labels, k), 10)
    out["nearest_others_s"] = round(t.seconds, 2)
    with harness.timed() as t:
        face_placements(emb, labels, p_minus=p)
    out["face_placements_all_s"] = round(t.seconds, 2)
    out["build_now_s"] = round(out["whiten_s"] + out["cluster_pairs_s"] + out["nearest_others_s"], 2)
    out["build_before_s"] = round(out["build_now_s"] + out["face_placements_all_s"], 2)
    out["peak_rss_mib"] = harness.peak_rss_mib()
    return out


def markdown(rows: list[dict], white: list[dict]) -> str:
    lines = ["# The merge queue's build (first listing of a run's review queue)", "",
             "Seconds on this machine, synthetic clustered faces (see the script's docstring). `build now` is "
             "what `merge_queue.build` computes (since stop 29 the faces whitened by the clusters, then candidate "
             "pairs with features and each cluster's nearest others); `build before` adds every face's nearest "
             "clusters, which the build computed until stop 28 and nothing read. Embedding reads and the artifact "
             "write are not included.", "",
             "| faces | clusters | candidate pairs | whiten s | cluster_pairs s | nearest_others s | face_placements "
             "(all faces) s | build now s | build before s | peak RSS MiB |", "|" + " --- |" * 10]
    for r in rows:
        lines.append(f"| {r['faces']} | {r['clusters']} | {r['pairs']} | {r['whiten_s']} | {r['cluster_pairs_s']} | "
                     f"{r['nearest_others_s']} | {r['face_placements_all_s']} | {r['build_now_s']} | "
                     f"{r['build_before_s']} | {r['peak_rss_mib']} |")
    if white:
        lines += ["", "The whitening alone (what every listing of the queue adds to reading the run's faces):", "",
                  "| faces | clusters | whiten s | peak RSS MiB |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['faces']} | {r['clusters']} | {r['whiten_s']} | {r['peak_rss_mib']} |" for r in white]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    ap.add_argument("--whiten-sizes", type=int, nargs="*", default=[])
    args = ap.parse_args()
    rows = [measure(n) for n in args.sizes]
    white = [measure_whitening(n) for n in args.whiten_sizes]
    harness.write_results("merge_candidates_build", {"rows": rows, "whitening": white}, markdown(rows, white))
    print(markdown(rows, white))


if __name__ == "__main__":
    main()
